//! List queries: filters (repeated keys are alternatives), tag filters, `fields`, sorting and
//! marker pagination, applied to resource documents exactly as Neutron's API layer does.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use crate::attrs::{self, Attr, Conv};
use crate::error::{ApiError, ApiResult};

/// Query parameters that are never filters.
const RESERVED: &[&str] = &[
    "fields",
    "sort_key",
    "sort_dir",
    "limit",
    "marker",
    "page_reverse",
];
/// Tag filter parameters.
const TAG_FILTERS: &[&str] = &["tags", "tags-any", "not-tags", "not-tags-any"];

/// A parsed list request.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    /// `(attribute, accepted values)`; an item matches when each attribute matches one value.
    pub filters: Vec<(String, Vec<Value>)>,
    /// `tags`, `tags-any`, `not-tags`, `not-tags-any`, each a list of tags.
    pub tag_filters: Vec<(String, Vec<String>)>,
    /// Requested fields (empty = all).
    pub fields: Vec<String>,
    /// `(key, ascending)`.
    pub sort: Vec<(String, bool)>,
    /// Page size.
    pub limit: Option<usize>,
    /// Id of the last item of the previous page.
    pub marker: Option<String>,
    /// Page backwards from the marker.
    pub page_reverse: bool,
}

impl ListQuery {
    /// The values of one filter, if given.
    pub fn filter(&self, name: &str) -> Option<&[Value]> {
        self.filters
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }

    /// Removes a filter and returns its values.
    pub fn take_filter(&mut self, name: &str) -> Option<Vec<Value>> {
        let pos = self.filters.iter().position(|(k, _)| k == name)?;
        Some(self.filters.remove(pos).1)
    }
}

fn filter_value(attr: &Attr, raw: &str) -> ApiResult<Value> {
    let v = Value::String(raw.to_string());
    match attr.conv {
        Conv::Bool | Conv::NullableBool => attrs::to_bool(&v).map(Value::Bool).ok_or_else(|| {
            ApiError::bad_request(format!(
                "Invalid input for {}. Reason: '{raw}' cannot be converted to boolean.",
                attr.name
            ))
        }),
        Conv::Int(..) | Conv::NullableInt(..) => match raw.parse::<i64>() {
            Ok(n) => Ok(Value::from(n)),
            Err(_) => Err(ApiError::bad_request(format!(
                "Invalid input for {}. Reason: '{raw}' is not an integer.",
                attr.name
            ))),
        },
        _ => Ok(v),
    }
}

/// Parses query pairs against a resource spec. `extra_filters` are accepted filter names that
/// the spec does not list (e.g. `fixed_ips` sub-keys handled by the resource).
pub fn parse(
    pairs: &[(String, String)],
    spec: &[Attr],
    extra_filters: &[&str],
) -> ApiResult<ListQuery> {
    let mut q = ListQuery::default();
    let mut sort_keys = Vec::new();
    let mut sort_dirs = Vec::new();
    for (key, value) in pairs {
        match key.as_str() {
            "fields" => q.fields.extend(
                value
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            ),
            "sort_key" => sort_keys.push(value.clone()),
            "sort_dir" => sort_dirs.push(value.clone()),
            "limit" => {
                let n: i64 = value.parse().map_err(|_| {
                    ApiError::bad_request(format!(
                        "Limit must be an integer 0 or greater and not '{value}'"
                    ))
                })?;
                if n < 0 {
                    return Err(ApiError::bad_request(format!(
                        "Limit must be an integer 0 or greater and not '{value}'"
                    )));
                }
                q.limit = (n > 0).then_some(n as usize);
            }
            "marker" => q.marker = Some(value.clone()),
            "page_reverse" => {
                q.page_reverse = attrs::to_bool(&Value::String(value.clone())).unwrap_or(false)
            }
            k if TAG_FILTERS.contains(&k) => {
                let tags = value
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string);
                match q.tag_filters.iter_mut().find(|(n, _)| n == k) {
                    Some((_, list)) => list.extend(tags),
                    None => q.tag_filters.push((k.to_string(), tags.collect())),
                }
            }
            k if RESERVED.contains(&k) => {}
            k => {
                let value = match (attrs::find(spec, k), extra_filters.contains(&k)) {
                    (Some(attr), _) if attr.filter => filter_value(attr, value)?,
                    (_, true) => Value::String(value.clone()),
                    _ if k == "project_id" || k == "tenant_id" => Value::String(value.clone()),
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "['{k}'] is invalid attribute for filtering"
                        )))
                    }
                };
                match q.filters.iter_mut().find(|(n, _)| n == k) {
                    Some((_, list)) => list.push(value),
                    None => q.filters.push((k.to_string(), vec![value])),
                }
            }
        }
    }
    if q.filter("project_id").is_some() && q.filter("tenant_id").is_some() {
        return Err(ApiError::bad(
            "TenantIdProjectIdFilterConflict",
            "Both tenant_id and project_id passed as filters.",
        ));
    }
    if let Some(v) = q.take_filter("tenant_id") {
        q.filters.push(("project_id".to_string(), v));
    }
    if sort_keys.len() != sort_dirs.len() {
        return Err(ApiError::bad_request(
            "The number of sort_keys and sort_dirs must be same",
        ));
    }
    for (key, dir) in sort_keys.into_iter().zip(sort_dirs) {
        let asc = match dir.as_str() {
            "asc" => true,
            "desc" => false,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "{dir} is invalid value for sort_dirs, valid values are 'asc' and 'desc'"
                )))
            }
        };
        let key = if key == "tenant_id" {
            "project_id".to_string()
        } else {
            key
        };
        let sortable =
            key == "project_id" || attrs::find(spec, &key).map(|a| a.sort).unwrap_or(false);
        if !sortable {
            return Err(ApiError::bad_request(format!(
                "['{key}'] is invalid attribute for sort_keys"
            )));
        }
        q.sort.push((key, asc));
    }
    Ok(q)
}

fn scalar_eq(item: &Value, wanted: &Value) -> bool {
    match (item, wanted) {
        (Value::Null, Value::String(s)) => s.is_empty() || s == "None",
        (Value::String(a), Value::String(b)) => a == b,
        (Value::Number(a), Value::String(b)) => a.to_string() == *b,
        (Value::Bool(a), Value::String(b)) => attrs::to_bool(&Value::String(b.clone())) == Some(*a),
        (a, b) => a == b,
    }
}

/// Whether a document passes the plain filters (not tags).
pub fn matches(item: &Map<String, Value>, q: &ListQuery) -> bool {
    q.filters.iter().all(|(key, wanted)| match item.get(key) {
        Some(Value::Array(list)) => wanted.iter().any(|w| list.iter().any(|v| scalar_eq(v, w))),
        Some(v) => wanted.iter().any(|w| scalar_eq(v, w)),
        None => wanted.iter().any(|w| scalar_eq(&Value::Null, w)),
    }) && matches_tags(item, q)
}

fn matches_tags(item: &Map<String, Value>, q: &ListQuery) -> bool {
    let tags: Vec<&str> = item
        .get("tags")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    q.tag_filters.iter().all(|(kind, wanted)| {
        let all = wanted.iter().all(|t| tags.contains(&t.as_str()));
        let any = wanted.iter().any(|t| tags.contains(&t.as_str()));
        match kind.as_str() {
            "tags" => all,
            "tags-any" => any,
            "not-tags" => !all,
            "not-tags-any" => !any,
            _ => true,
        }
    })
}

fn rank(v: Option<&Value>) -> u8 {
    match v {
        None | Some(Value::Null) => 0,
        Some(Value::Bool(_)) => 1,
        Some(Value::Number(_)) => 2,
        Some(Value::String(_)) => 3,
        _ => 4,
    }
}

fn compare(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// One page of results and whether more exist on either side.
#[derive(Debug, Default)]
pub struct Page {
    /// The items of the page.
    pub items: Vec<Map<String, Value>>,
    /// A `next` link is due.
    pub next: bool,
    /// A `previous` link is due.
    pub previous: bool,
}

/// Sorts, pages and projects filtered documents. A marker that names no item answers 404.
pub fn page(mut items: Vec<Map<String, Value>>, q: &ListQuery, resource: &str) -> ApiResult<Page> {
    let mut keys = q.sort.clone();
    if (q.limit.is_some() || q.marker.is_some()) && !keys.iter().any(|(k, _)| k == "id") {
        keys.push(("id".to_string(), true));
    }
    if !keys.is_empty() {
        items.sort_by(|a, b| {
            for (key, asc) in &keys {
                let ord = compare(a.get(key), b.get(key));
                let ord = if *asc { ord } else { ord.reverse() };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            Ordering::Equal
        });
    }
    let mut out = Page::default();
    let Some(limit) = q.limit else {
        if let Some(marker) = &q.marker {
            let pos = position(&items, marker, resource)?;
            items = if q.page_reverse {
                items.drain(..pos).collect()
            } else {
                items.drain(pos + 1..).collect()
            };
        }
        out.items = items;
        return Ok(out);
    };
    if q.page_reverse {
        let end = match &q.marker {
            Some(m) => position(&items, m, resource)?,
            None => items.len(),
        };
        let start = end.saturating_sub(limit);
        out.items = items.drain(start..end).collect();
    } else {
        let start = match &q.marker {
            Some(m) => position(&items, m, resource)? + 1,
            None => 0,
        };
        let end = (start + limit).min(items.len());
        out.items = items.drain(start..end).collect();
    }
    // Neutron's rule: links unless a short page shows that end has been reached.
    let short = out.items.len() < limit;
    out.next = !short || q.page_reverse;
    out.previous = !short || !q.page_reverse;
    Ok(out)
}

fn position(items: &[Map<String, Value>], marker: &str, resource: &str) -> ApiResult<usize> {
    items
        .iter()
        .position(|i| i.get("id").and_then(Value::as_str) == Some(marker))
        .ok_or_else(|| ApiError::not_found(resource, marker))
}

/// Keeps only the requested fields (all when none are requested).
pub fn project(item: Map<String, Value>, fields: &[String]) -> Map<String, Value> {
    if fields.is_empty() {
        return item;
    }
    item.into_iter()
        .filter(|(k, _)| fields.iter().any(|f| f == k))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::attrs::{ro, rw, Fill};

    const SPEC: &[Attr] = &[
        ro("id"),
        rw("name", Conv::Str(255), Fill::Str("")),
        rw("admin_state_up", Conv::Bool, Fill::Bool(true)),
    ];

    fn pairs(s: &[(&str, &str)]) -> Vec<(String, String)> {
        s.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn docs() -> Vec<Map<String, Value>> {
        (0..5)
            .map(|i| {
                json!({"id": format!("id{i}"), "name": format!("n{}", 4 - i), "admin_state_up": i % 2 == 0, "tags": if i < 2 {vec!["a", "b"]} else {vec!["b"]}})
                    .as_object()
                    .unwrap()
                    .clone()
            })
            .collect()
    }

    #[test]
    fn repeated_filters_are_or_and_bools_convert() {
        let q = parse(
            &pairs(&[("name", "n1"), ("name", "n2"), ("admin_state_up", "True")]),
            SPEC,
            &[],
        )
        .unwrap();
        let got: Vec<_> = docs().into_iter().filter(|d| matches(d, &q)).collect();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["id"], "id2");
    }

    #[test]
    fn tag_filters() {
        let q = parse(&pairs(&[("tags", "a,b")]), SPEC, &[]).unwrap();
        assert_eq!(docs().iter().filter(|d| matches(d, &q)).count(), 2);
        let q = parse(&pairs(&[("not-tags-any", "a")]), SPEC, &[]).unwrap();
        assert_eq!(docs().iter().filter(|d| matches(d, &q)).count(), 3);
    }

    #[test]
    fn bad_queries_are_400() {
        for p in [
            pairs(&[("bogus", "1")]),
            pairs(&[("sort_key", "name")]),
            pairs(&[("sort_key", "name"), ("sort_dir", "up")]),
            pairs(&[("limit", "-1")]),
            pairs(&[("tenant_id", "a"), ("project_id", "a")]),
            pairs(&[("admin_state_up", "maybe")]),
        ] {
            assert_eq!(parse(&p, SPEC, &[]).unwrap_err().status, 400, "{p:?}");
        }
    }

    #[test]
    fn sort_and_paginate() {
        let q = parse(
            &pairs(&[("sort_key", "name"), ("sort_dir", "asc"), ("limit", "2")]),
            SPEC,
            &[],
        )
        .unwrap();
        let p = page(docs(), &q, "network").unwrap();
        assert_eq!(p.items[0]["name"], "n0");
        assert!(p.next && p.previous, "full page: both links");
        let q = parse(
            &pairs(&[
                ("sort_key", "name"),
                ("sort_dir", "asc"),
                ("limit", "2"),
                ("marker", "id1"),
            ]),
            SPEC,
            &[],
        )
        .unwrap();
        let p = page(docs(), &q, "network").unwrap();
        assert_eq!(p.items.len(), 1);
        assert_eq!(p.items[0]["id"], "id0");
        assert!(!p.next && p.previous, "short page: no next");
        let q = parse(&pairs(&[("limit", "2"), ("marker", "nope")]), SPEC, &[]).unwrap();
        assert_eq!(page(docs(), &q, "network").unwrap_err().status, 404);
    }
}
