//! The API error: Neutron's exception type name, message and HTTP status, so every layer can
//! say exactly what the client will see (`{"NeutronError": {"type", "message", "detail"}}`).

use std::fmt;

/// An error a client sees, with the upstream exception name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// Upstream exception class name, e.g. `NetworkNotFound`.
    pub kind: String,
    /// Human readable message.
    pub message: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.kind, self.message)
    }
}

impl std::error::Error for ApiError {}

/// Result alias used across the API-facing crates.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with an explicit status, type and message.
    pub fn new(status: u16, kind: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind: kind.into(),
            message: message.into(),
        }
    }

    /// The same error under another upstream type name.
    pub fn with_type(mut self, kind: &str) -> Self {
        self.kind = kind.to_string();
        self
    }

    /// 400 `HTTPBadRequest`: the request could not be parsed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "HTTPBadRequest", message)
    }

    /// 400 `InvalidInput`: "Invalid input for operation: ...".
    pub fn invalid_input(message: impl fmt::Display) -> Self {
        Self::new(
            400,
            "InvalidInput",
            format!("Invalid input for operation: {message}."),
        )
    }

    /// 400 with a specific upstream type.
    pub fn bad(kind: &str, message: impl Into<String>) -> Self {
        Self::new(400, kind, message)
    }

    /// 404 `<Resource>NotFound`, e.g. `NetworkNotFound` "Network X could not be found.".
    pub fn not_found(resource: &str, id: &str) -> Self {
        // networking-sfc words its own: "Port Pair Group X not found.".
        let sfc = match resource {
            "flow_classifier" => Some("Flow Classifier"),
            "port_pair" => Some("Port Pair"),
            "port_pair_group" => Some("Port Pair Group"),
            "port_chain" => Some("Port Chain"),
            "service_graph" => Some("Service Graph"),
            _ => None,
        };
        // networking-l2gw's own wording.
        let l2gw = match resource {
            "l2_gateway" => Some(format!("L2 Gateway {id} could not be found")),
            "l2_gateway_connection" => {
                Some(format!("The connection {id} not found on the l2 gateway"))
            }
            "l2_remote_gateway" => Some(format!("L2 remote gateway {id} could not be found.")),
            "l2_remote_gateway_connection" => Some(format!(
                "L2 remote gateway connection {id} could not be found."
            )),
            "l2_remote_mac" => Some(format!("L2 remote MAC {id} could not be found.")),
            // neutron-dynamic-routing's.
            "bgp_speaker" => Some(format!("BGP speaker {id} could not be found.")),
            "bgp_peer" => Some(format!("BGP peer {id} could not be found.")),
            "log" => Some(format!("Log {id} could not be found.")),
            // Neutron's metering plugin's.
            "metering_label" => Some(format!("Metering label {id} does not exist")),
            "metering_label_rule" => Some(format!("Metering label rule {id} does not exist")),
            _ => None,
        };
        if let Some(text) = l2gw {
            return Self::new(404, format!("{}NotFound", camel_case(resource)), text);
        }
        if let Some(words) = sfc {
            return Self::new(
                404,
                format!("{}NotFound", camel_case(resource)),
                format!("{words} {id} not found."),
            );
        }
        let (camel, words) = match resource {
            "floatingip" => ("FloatingIP".to_string(), "floating IP".to_string()),
            "subnetpool" => ("SubnetPool".to_string(), "subnetpool".to_string()),
            "policy" => ("QosPolicy".to_string(), "QoS policy".to_string()),
            _ => (camel_case(resource), resource.replace('_', " ")),
        };
        let mut text = words.clone();
        if let Some(first) = text.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        Self::new(
            404,
            format!("{camel}NotFound"),
            format!("{text} {id} could not be found."),
        )
    }

    /// 404 `HTTPNotFound` for unknown URLs.
    pub fn no_such_url() -> Self {
        Self::new(404, "HTTPNotFound", "The resource could not be found.")
    }

    /// 409 with a specific upstream type.
    pub fn conflict(kind: &str, message: impl Into<String>) -> Self {
        Self::new(409, kind, message)
    }

    /// 403 `PolicyNotAuthorized` for an action the caller may not perform.
    pub fn forbidden(action: &str) -> Self {
        Self::new(
            403,
            "PolicyNotAuthorized",
            format!("({action}) is disallowed by policy"),
        )
    }

    /// 401 for a missing or invalid token.
    pub fn unauthorized() -> Self {
        Self::new(
            401,
            "HTTPUnauthorized",
            "The request you have made requires authentication.",
        )
    }

    /// 500 with the generic upstream text; the cause is logged, not shown.
    pub fn internal() -> Self {
        Self::new(
            500,
            "HTTPInternalServerError",
            "Request Failed: internal server error while processing your request.",
        )
    }

    /// 503 `ServiceUnavailable`, for transient storage failures.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }
}

/// `security_group_rule` -> `SecurityGroupRule`.
pub fn camel_case(snake: &str) -> String {
    snake
        .split(['_', ' ', '-'])
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_names_follow_upstream() {
        let e = ApiError::not_found("security_group", "x");
        assert_eq!(e.kind, "SecurityGroupNotFound");
        assert_eq!(e.message, "Security group x could not be found.");
        assert_eq!(e.status, 404);
    }
}
