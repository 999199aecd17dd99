//! Budgets on a search that the client controls (`[limits]`): `max_num_results`, and the size of
//! an attribute filter, `in`/`nin` lists included. Checked here, before the filter is parsed or
//! any search runs, because a filter is evaluated against every candidate chunk: a list of a
//! million values costs a million comparisons a chunk.

use serde_json::Value;
use store::Filter;

use crate::config::LimitSettings;
use crate::fault::ServiceError;

/// `max_num_results` (given or defaulted) within `1..=limits.max_num_results`.
pub fn checked_max_results(max: usize, limits: &LimitSettings, param: &str) -> Result<usize, ServiceError> {
    let limit = limits.max_num_results;
    if !(1..=limit).contains(&max) {
        return Err(ServiceError::invalid(param, format!("max_num_results must be between 1 and {limit} (limits.max_num_results), got {max}")));
    }
    Ok(max)
}

/// The filter, parsed, if its conditions and listed values together stay within
/// `limits.max_filter_values`.
pub fn checked_filter(filters: Option<&Value>, limits: &LimitSettings, param: &str) -> Result<Option<Filter>, ServiceError> {
    let Some(filters) = filters else { return Ok(None) };
    let size = filter_size(filters);
    let limit = limits.max_filter_values;
    if size > limit {
        return Err(ServiceError::invalid(
            param,
            format!("the filter has {size} conditions and listed values, more than limits.max_filter_values = {limit}"),
        ));
    }
    Filter::parse(filters).map(Some).map_err(|e| ServiceError::invalid(param, e.to_string()))
}

/// Conditions plus the values of every `in`/`nin` list, counted without recursion (a hostile
/// filter can nest as deep as the JSON parser allows).
fn filter_size(filter: &Value) -> usize {
    let mut size = 0usize;
    let mut pending = vec![filter];
    while let Some(node) = pending.pop() {
        size += 1;
        if let Some(list) = node.get("filters").and_then(Value::as_array) {
            pending.extend(list);
        }
        if let Some(values) = node.get("value").and_then(Value::as_array) {
            size += values.len();
        }
    }
    size
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use serde_json::json;

    use super::*;

    fn limits(max_filter_values: usize, max_num_results: usize) -> LimitSettings {
        let mut l = LimitSettings::embedded_default();
        l.max_filter_values = max_filter_values;
        l.max_num_results = max_num_results;
        l
    }

    #[test]
    fn a_long_in_list_is_refused_with_the_key_and_a_normal_filter_parses() {
        let l = limits(100, 50);
        let values: Vec<u32> = (0..101).collect();
        let big = json!({"type": "and", "filters": [{"type": "eq", "key": "a", "value": 1}, {"type": "in", "key": "b", "value": values}]});
        let err = checked_filter(Some(&big), &l, "filters").unwrap_err();
        assert!(err.to_string().contains("limits.max_filter_values = 100") && err.to_string().contains("104"), "{err}");
        let small = json!({"type": "in", "key": "b", "value": ["x", "y"]});
        assert!(matches!(checked_filter(Some(&small), &l, "filters"), Ok(Some(_))));
        assert!(matches!(checked_filter(None, &l, "filters"), Ok(None)));
        let bad = json!({"type": "in", "key": "b", "value": 3});
        assert!(checked_filter(Some(&bad), &l, "filters").is_err());
    }

    #[test]
    fn the_shipped_limits_pass_their_own_checks() {
        assert_eq!(LimitSettings::embedded_default().check(), Ok(()));
        let mut zero = LimitSettings::embedded_default();
        zero.max_stored_responses = 0;
        assert_eq!(zero.check().map_err(|(key, _)| key), Err("limits.max_stored_responses"));
    }

    #[test]
    fn max_num_results_is_bounded_by_the_limit() {
        let l = limits(100, 20);
        assert_eq!(checked_max_results(20, &l, "max_num_results").ok(), Some(20));
        let err = checked_max_results(21, &l, "max_num_results").unwrap_err();
        assert!(err.to_string().contains("between 1 and 20 (limits.max_num_results)"), "{err}");
        assert!(checked_max_results(0, &l, "max_num_results").is_err());
    }
}
