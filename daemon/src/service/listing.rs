//! OpenAI's cursor pagination for list endpoints: `limit`, `order`, `after`, `before`, answered
//! with a [`Page`] that the HTTP edge writes as `{"object": "list", "first_id", "last_id",
//! "has_more", "data"}` (`api::types::List`).

use serde::Deserialize;

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

/// Something a list endpoint pages through: it has an id the cursor names.
pub trait Listed {
    /// The id `after` and `before` refer to.
    fn list_id(&self) -> &str;
}

/// One page of a list, in the order asked; the HTTP edge wraps it as `{"object": "list", ...}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub data: Vec<T>,
    /// The first and last item's ids (the cursors of the next pages), `None` for an empty page.
    pub first_id: Option<String>,
    pub last_id: Option<String>,
    /// More items lie beyond this page in its direction.
    pub has_more: bool,
}

impl<T> Page<T> {
    /// The same page with each item converted.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { data: self.data.into_iter().map(f).collect(), first_id: self.first_id, last_id: self.last_id, has_more: self.has_more }
    }
}

/// One page of `items`, given oldest first.
pub fn page<T: Listed>(mut items: Vec<T>, query: &ListQuery) -> Result<Page<T>, ServiceError> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=10_000).contains(&limit) {
        return Err(ServiceError::invalid("limit", format!("limit must be between 1 and 10000, got {limit}")));
    }
    match query.order.as_deref() {
        None | Some("desc") => items.reverse(),
        Some("asc") => {}
        Some(other) => return Err(ServiceError::invalid("order", format!("order must be \"asc\" or \"desc\", got {other:?}"))),
    }
    let position = |id: &str| items.iter().position(|v| v.list_id() == id);
    let start = match &query.after {
        Some(after) => position(after).map_or(items.len(), |i| i + 1),
        None => 0,
    };
    let end = match &query.before {
        Some(before) => position(before).unwrap_or(items.len()),
        None => items.len(),
    }
    .max(start);
    let data: Vec<T> = items.into_iter().skip(start).take((end - start).min(limit)).collect();
    let has_more = end - start > data.len();
    Ok(Page {
        first_id: data.first().map(|v| v.list_id().to_owned()),
        last_id: data.last().map(|v| v.list_id().to_owned()),
        has_more,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Item(String);

    impl Listed for Item {
        fn list_id(&self) -> &str {
            &self.0
        }
    }

    fn items() -> Vec<Item> {
        (1..=5).map(|i| Item(format!("f{i}"))).collect()
    }

    fn ids(page: &Page<Item>) -> Vec<&str> {
        page.data.iter().map(|i| i.0.as_str()).collect()
    }

    #[test]
    fn pages_follow_the_cursor_in_both_orders() {
        let q = ListQuery { limit: Some(2), ..ListQuery::default() };
        let first = page(items(), &q).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ids(&first), ["f5", "f4"]);
        assert_eq!((first.first_id.as_deref(), first.last_id.as_deref(), first.has_more), (Some("f5"), Some("f4"), true));
        let q = ListQuery { limit: Some(2), after: Some("f4".into()), ..ListQuery::default() };
        assert_eq!(ids(&page(items(), &q).unwrap_or_else(|e| panic!("{e}"))), ["f3", "f2"]);
        let q = ListQuery { limit: Some(10), order: Some("asc".into()), after: Some("f3".into()), ..ListQuery::default() };
        let last = page(items(), &q).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ids(&last), ["f4", "f5"]);
        assert!(!last.has_more);
        let q = ListQuery { order: Some("asc".into()), before: Some("f3".into()), ..ListQuery::default() };
        assert_eq!(ids(&page(items(), &q).unwrap_or_else(|e| panic!("{e}"))), ["f1", "f2"]);
        let empty = page(items(), &ListQuery { after: Some("f1".into()), ..ListQuery::default() }).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((empty.data.len(), empty.first_id, empty.has_more), (0, None, false));
        assert!(page(items(), &ListQuery { order: Some("up".into()), ..ListQuery::default() }).is_err());
        assert!(page(items(), &ListQuery { limit: Some(0), ..ListQuery::default() }).is_err());
    }
}
