//! Security-group logging (neutron-lib's `logging` and `network-log`) as data: the attribute
//! specification of a log object, the loggable resource types, and the value checks with
//! upstream's errors.

use serde_json::{Map, Value};

use crate::attrs::{ro, rw, Attr, Conv, Fill};
use crate::error::{ApiError, ApiResult};
use crate::resources::NAME_LEN;

/// The resource types a log may name (upstream's security-group driver's only type).
pub const LOGGABLE_TYPES: &[&str] = &["security_group"];

/// The events a log records.
pub const EVENTS: &[&str] = &["ALL", "ACCEPT", "DROP"];

/// `/v2.0/log/logs`.
pub const LOG: &[Attr] = &[
    ro("id"),
    rw("name", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("description", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("resource_type", Conv::Str(36), Fill::Absent)
        .required()
        .create_only(),
    rw("resource_id", Conv::NullableUuid, Fill::Null).create_only(),
    rw("target_id", Conv::NullableUuid, Fill::Null).create_only(),
    rw("event", Conv::Enum(EVENTS), Fill::Str("ALL")).create_only(),
    rw("enabled", Conv::Bool, Fill::Bool(true)),
    ro("created_at"),
    ro("updated_at"),
    ro("revision_number"),
];

/// The checks of a validated create body the spec cannot state: a loggable type
/// (`InvalidLogResourceType`).
pub fn check_log(body: &Map<String, Value>) -> ApiResult<()> {
    let kind = body
        .get("resource_type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if LOGGABLE_TYPES.contains(&kind) {
        Ok(())
    } else {
        Err(ApiError::bad(
            "InvalidLogResourceType",
            format!("Invalid resource_type {kind}"),
        ))
    }
}

/// 404 `ResourceNotFound`: the `resource_id` of a log names nothing.
pub fn resource_not_found(id: &str) -> ApiError {
    ApiError::new(
        404,
        "ResourceNotFound",
        format!("Resource {id} could not be found."),
    )
}

/// 404 `TargetResourceNotFound`: the `target_id` of a log names no port.
pub fn target_not_found(id: &str) -> ApiError {
    ApiError::new(
        404,
        "TargetResourceNotFound",
        format!("Target resource {id} could not be found."),
    )
}

/// 400 `LoggingTypeNotSupported`: the port is bound to no host whose agent logs.
pub fn type_not_supported(kind: &str, port: &str) -> ApiError {
    ApiError::bad(
        "LoggingTypeNotSupported",
        format!("Logging type {kind} is not supported on port {port}."),
    )
}

/// 400 `InvalidResourceConstraint`: the port is not a member of the security group.
pub fn invalid_constraint(group: &str, port: &str) -> ApiError {
    ApiError::bad(
        "InvalidResourceConstraint",
        format!(
            "Invalid resource constraint between resource (security_group {group}) and \
             target resource (port {port})."
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_security_groups_are_loggable() {
        let body = |t: &str| json!({"resource_type": t}).as_object().unwrap().clone();
        assert!(check_log(&body("security_group")).is_ok());
        let e = check_log(&body("firewall_group")).unwrap_err();
        assert_eq!((e.status, e.kind.as_str()), (400, "InvalidLogResourceType"));
    }
}
