//! Attribute specifications (Neutron's RESOURCE_ATTRIBUTE_MAP as data) and the generic body
//! validation built on them: unknown, read-only and missing attributes, converters, defaults.

use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};

/// How an attribute's value is checked and normalised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conv {
    /// String up to the given length.
    Str(usize),
    /// String up to the given length, or null.
    NullableStr(usize),
    /// Boolean; accepts `true`, `"True"`, `"1"`, 1 and friends.
    Bool,
    /// Boolean or null (`convert_to_boolean_if_not_none`).
    NullableBool,
    /// Integer in an inclusive range; accepts numeric strings.
    Int(i64, i64),
    /// Integer in an inclusive range, or null.
    NullableInt(i64, i64),
    /// A UUID string.
    Uuid,
    /// A UUID string or null.
    NullableUuid,
    /// One of a fixed set of strings.
    Enum(&'static [&'static str]),
    /// One of a fixed set of strings, or null.
    NullableEnum(&'static [&'static str]),
    /// A list of strings.
    StrList,
    /// A JSON object.
    Dict,
    /// Anything; the resource's own code validates it.
    Any,
}

/// The default of an attribute that a create request leaves out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// No default: the attribute stays absent (the resource code may compute it).
    Absent,
    /// JSON null.
    Null,
    /// A boolean.
    Bool(bool),
    /// A string.
    Str(&'static str),
    /// An empty list.
    EmptyList,
    /// An empty object.
    EmptyDict,
}

impl Fill {
    fn value(self) -> Option<Value> {
        match self {
            Fill::Absent => None,
            Fill::Null => Some(Value::Null),
            Fill::Bool(b) => Some(Value::Bool(b)),
            Fill::Str(s) => Some(Value::String(s.to_string())),
            Fill::EmptyList => Some(Value::Array(Vec::new())),
            Fill::EmptyDict => Some(Value::Object(Map::new())),
        }
    }
}

/// One attribute of a resource.
#[derive(Clone, Copy, Debug)]
pub struct Attr {
    /// Wire name.
    pub name: &'static str,
    /// Converter / validator.
    pub conv: Conv,
    /// Settable on create.
    pub post: bool,
    /// Settable on update.
    pub put: bool,
    /// Must be present on create.
    pub required: bool,
    /// Value when a create leaves it out.
    pub fill: Fill,
    /// Usable as a list filter.
    pub filter: bool,
    /// Usable as a sort key.
    pub sort: bool,
    /// Shown to admins only (e.g. `provider:*`, `binding:*`).
    pub admin_only: bool,
}

/// A read-only attribute (shown, filterable and sortable by default).
pub const fn ro(name: &'static str) -> Attr {
    Attr {
        name,
        conv: Conv::Any,
        post: false,
        put: false,
        required: false,
        fill: Fill::Absent,
        filter: true,
        sort: true,
        admin_only: false,
    }
}

/// A settable attribute: create and update, with a default.
pub const fn rw(name: &'static str, conv: Conv, fill: Fill) -> Attr {
    Attr {
        name,
        conv,
        post: true,
        put: true,
        required: false,
        fill,
        filter: true,
        sort: true,
        admin_only: false,
    }
}

impl Attr {
    /// Only on create.
    pub const fn create_only(mut self) -> Self {
        self.put = false;
        self
    }
    /// Required on create.
    pub const fn required(mut self) -> Self {
        self.required = true;
        self
    }
    /// Not a filter.
    pub const fn no_filter(mut self) -> Self {
        self.filter = false;
        self
    }
    /// Not a sort key.
    pub const fn no_sort(mut self) -> Self {
        self.sort = false;
        self
    }
    /// Visible to admins only.
    pub const fn admin(mut self) -> Self {
        self.admin_only = true;
        self
    }

    /// The value a create that leaves the attribute out gets, if any.
    pub fn default_value(&self) -> Option<Value> {
        self.fill.value()
    }
}

/// Whether a request creates or updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// POST.
    Create,
    /// PUT.
    Update,
}

fn invalid(attr: &str, reason: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("Invalid input for {attr}. Reason: {reason}."))
}

/// Parses a boolean the way Neutron's `convert_to_boolean` does.
pub fn to_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn to_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Whether `s` is a UUID in any of the spellings Neutron accepts.
pub fn is_uuid(s: &str) -> bool {
    uuid::Uuid::try_parse(s).is_ok() && (s.len() == 36 || s.len() == 32)
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("'{s}'"),
        other => format!("'{other}'"),
    }
}

/// Converts and validates one attribute value.
pub fn convert(attr: &Attr, v: &Value) -> ApiResult<Value> {
    let name = attr.name;
    match attr.conv {
        Conv::Any => Ok(v.clone()),
        Conv::Str(max) | Conv::NullableStr(max) => match v {
            Value::Null if matches!(attr.conv, Conv::NullableStr(_)) => Ok(Value::Null),
            Value::String(s) if s.chars().count() <= max => Ok(v.clone()),
            Value::String(s) => Err(invalid(
                name,
                format!("'{s}' exceeds maximum length of {max}"),
            )),
            other => Err(invalid(
                name,
                format!("{} is not a valid string", show(other)),
            )),
        },
        Conv::NullableBool if v.is_null() => Ok(Value::Null),
        Conv::Bool | Conv::NullableBool => to_bool(v)
            .map(Value::Bool)
            .ok_or_else(|| invalid(name, format!("{} cannot be converted to boolean", show(v)))),
        Conv::Int(lo, hi) | Conv::NullableInt(lo, hi) => {
            if v.is_null() && matches!(attr.conv, Conv::NullableInt(..)) {
                return Ok(Value::Null);
            }
            let n =
                to_int(v).ok_or_else(|| invalid(name, format!("{} is not an integer", show(v))))?;
            if n < lo || n > hi {
                return Err(invalid(
                    name,
                    format!("'{n}' is not in range {lo} through {hi}"),
                ));
            }
            Ok(Value::from(n))
        }
        Conv::Uuid | Conv::NullableUuid => match v {
            Value::Null if attr.conv == Conv::NullableUuid => Ok(Value::Null),
            Value::String(s) if is_uuid(s) => Ok(v.clone()),
            other => Err(invalid(
                name,
                format!("{} is not a valid UUID", show(other)),
            )),
        },
        Conv::Enum(values) | Conv::NullableEnum(values) => match v {
            Value::Null if matches!(attr.conv, Conv::NullableEnum(_)) => Ok(Value::Null),
            Value::String(s) if values.contains(&s.as_str()) => Ok(v.clone()),
            other => Err(invalid(
                name,
                format!("{} is not in {:?}", show(other), values),
            )),
        },
        Conv::StrList => match v {
            Value::Array(items) if items.iter().all(Value::is_string) => Ok(v.clone()),
            other => Err(invalid(
                name,
                format!("{} is not a list of strings", show(other)),
            )),
        },
        Conv::Dict => match v {
            Value::Object(_) => Ok(v.clone()),
            Value::Null => Ok(Value::Object(Map::new())),
            other => Err(invalid(
                name,
                format!("{} is not a dictionary", show(other)),
            )),
        },
    }
}

/// Finds an attribute by name.
pub fn find<'a>(spec: &'a [Attr], name: &str) -> Option<&'a Attr> {
    spec.iter().find(|a| a.name == name)
}

/// Checks a create or update body against the spec: unknown and not-allowed attributes are
/// refused, values converted, and on create missing attributes get their defaults.
///
/// `project_id`/`tenant_id` are left to the caller (they need the request context).
pub fn validate(spec: &[Attr], body: &Map<String, Value>, op: Op) -> ApiResult<Map<String, Value>> {
    let unknown: Vec<&str> = body
        .keys()
        .filter(|k| find(spec, k).is_none() && !matches!(k.as_str(), "project_id" | "tenant_id"))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Unrecognized attribute(s) '{}'",
            unknown.join(", ")
        )));
    }
    let mut out = Map::new();
    for attr in spec {
        match body.get(attr.name) {
            Some(v) => {
                match op {
                    Op::Create if !attr.post => {
                        return Err(ApiError::bad_request(format!(
                            "Attribute '{}' not allowed in POST",
                            attr.name
                        )))
                    }
                    Op::Update if !attr.put => {
                        return Err(ApiError::bad_request(format!(
                            "Cannot update read-only attribute {}",
                            attr.name
                        )))
                    }
                    _ => {}
                }
                out.insert(attr.name.to_string(), convert(attr, v)?);
            }
            None if op == Op::Create && attr.post => {
                if attr.required {
                    return Err(ApiError::bad_request(format!(
                        "Failed to parse request. Required attribute '{}' not specified",
                        attr.name
                    )));
                }
                if let Some(v) = attr.fill.value() {
                    out.insert(attr.name.to_string(), v);
                }
            }
            None => {}
        }
    }
    for key in ["project_id", "tenant_id"] {
        if let Some(v) = body.get(key) {
            match v {
                Value::String(s) if s.len() <= 255 => {
                    out.insert(key.to_string(), v.clone());
                    let _ = s;
                }
                other => {
                    return Err(invalid(
                        key,
                        format!("{} is not a valid string", show(other)),
                    ))
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SPEC: &[Attr] = &[
        ro("id"),
        rw("name", Conv::Str(255), Fill::Str("")),
        rw("admin_state_up", Conv::Bool, Fill::Bool(true)),
        rw("network_id", Conv::Uuid, Fill::Absent)
            .required()
            .create_only(),
    ];

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn defaults_and_conversion() {
        let out = validate(
            SPEC,
            &obj(json!({"network_id": "0b3b8a1c-1d2e-4f50-9a0b-0c1d2e3f4a5b", "admin_state_up": "True"})),
            Op::Create,
        )
        .unwrap();
        assert_eq!(out["name"], "");
        assert_eq!(out["admin_state_up"], true);
    }

    #[test]
    fn refusals() {
        let e = validate(SPEC, &obj(json!({"bogus": 1})), Op::Update).unwrap_err();
        assert_eq!(e.message, "Unrecognized attribute(s) 'bogus'");
        let e = validate(SPEC, &obj(json!({"id": "x"})), Op::Create).unwrap_err();
        assert_eq!(e.status, 400);
        let e = validate(SPEC, &obj(json!({})), Op::Create).unwrap_err();
        assert!(e.message.contains("Required attribute 'network_id'"));
        let e = validate(SPEC, &obj(json!({"network_id": "x"})), Op::Update).unwrap_err();
        assert!(e.message.contains("read-only"));
        let e = validate(SPEC, &obj(json!({"admin_state_up": "maybe"})), Op::Update).unwrap_err();
        assert_eq!(e.status, 400);
        let long = "x".repeat(256);
        assert!(validate(SPEC, &obj(json!({"name": long})), Op::Update).is_err());
    }
}
