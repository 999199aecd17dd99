//! OpenAI's cursor pagination for list endpoints: `limit`, `order`, `after`, `before`, answered
//! as `{"object": "list", "data", "first_id", "last_id", "has_more"}`.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::fault::ServiceError;

/// The query string of a list endpoint.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<usize>,
    pub order: Option<String>,
    pub after: Option<String>,
    pub before: Option<String>,
    /// Vector store files: only this status.
    pub filter: Option<String>,
    /// Files: only this purpose.
    pub purpose: Option<String>,
}

/// One page of `items` (each with an `"id"`), given oldest first.
pub fn page(mut items: Vec<Value>, query: &ListQuery) -> Result<Value, ServiceError> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=10_000).contains(&limit) {
        return Err(ServiceError::invalid("limit", format!("limit must be between 1 and 10000, got {limit}")));
    }
    match query.order.as_deref() {
        None | Some("desc") => items.reverse(),
        Some("asc") => {}
        Some(other) => return Err(ServiceError::invalid("order", format!("order must be \"asc\" or \"desc\", got {other:?}"))),
    }
    let position = |id: &str| items.iter().position(|v| v["id"] == id);
    let start = match &query.after {
        Some(after) => position(after).map_or(items.len(), |i| i + 1),
        None => 0,
    };
    let end = match &query.before {
        Some(before) => position(before).unwrap_or(items.len()),
        None => items.len(),
    };
    let window: Vec<Value> = items.get(start..end.max(start)).unwrap_or_default().iter().take(limit).cloned().collect();
    let has_more = end.max(start) - start > window.len();
    Ok(json!({
        "object": "list",
        "first_id": window.first().map(|v| v["id"].clone()),
        "last_id": window.last().map(|v| v["id"].clone()),
        "has_more": has_more,
        "data": window,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(page: &Value) -> Vec<String> {
        page["data"].as_array().into_iter().flatten().filter_map(|v| v["id"].as_str().map(str::to_owned)).collect()
    }

    #[test]
    fn pages_follow_the_cursor_in_both_orders() {
        let items: Vec<Value> = (1..=5).map(|i| json!({"id": format!("f{i}")})).collect();
        let q = ListQuery { limit: Some(2), ..ListQuery::default() };
        let first = page(items.clone(), &q).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ids(&first), ["f5", "f4"]);
        assert_eq!(first["has_more"], true);
        let q = ListQuery { limit: Some(2), after: Some("f4".into()), ..ListQuery::default() };
        assert_eq!(ids(&page(items.clone(), &q).unwrap_or_else(|e| panic!("{e}"))), ["f3", "f2"]);
        let q = ListQuery { limit: Some(10), order: Some("asc".into()), after: Some("f3".into()), ..ListQuery::default() };
        let last = page(items.clone(), &q).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ids(&last), ["f4", "f5"]);
        assert_eq!(last["has_more"], false);
        assert!(page(items, &ListQuery { order: Some("up".into()), ..ListQuery::default() }).is_err());
    }
}
