//! DNS integration (`dns-integration`, `dns-domain-ports`) as data: the checks of a port's
//! `dns_name` and of a network's or port's `dns_domain`, and a port's `dns_assignment` (one
//! `{hostname, ip_address, fqdn}` per address: the port's `dns_name`, else `host-` and the
//! address with `-` for its separators, under the server's DNS domain).

use serde_json::{json, Value};

use crate::ApiError;

/// The longest name DNS allows.
const FQDN_MAX: usize = 255;

/// Whether `label` is a DNS label: 1 to 63 letters, digits and hyphens, not starting or
/// ending with a hyphen.
fn is_label(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

fn invalid(attr: &str, value: &str, reason: &str) -> ApiError {
    ApiError::bad_request(format!(
        "Invalid input for {attr}. Reason: '{value}' not a valid PQDN or FQDN. Reason: {reason}."
    ))
}

/// Checks a `dns_name` (`""` clears it): labels, at most 255 characters, the last label not
/// all digits.
pub fn check_dns_name(name: &str) -> Result<(), ApiError> {
    check_name("dns_name", name)
}

/// Checks a `dns_domain` (`""` clears it; a trailing `.` is optional).
pub fn check_dns_domain(domain: &str) -> Result<(), ApiError> {
    check_name("dns_domain", domain)
}

fn check_name(attr: &str, name: &str) -> Result<(), ApiError> {
    if name.is_empty() {
        return Ok(());
    }
    if name.len() > FQDN_MAX {
        return Err(invalid(attr, name, "it exceeds 255 characters"));
    }
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    let labels: Vec<&str> = trimmed.split('.').collect();
    if let Some(bad) = labels.iter().find(|l| !is_label(l)) {
        return Err(invalid(
            attr,
            name,
            &format!("'{bad}' is not a label of 1 to 63 letters, digits and hyphens"),
        ));
    }
    if labels.len() > 1
        && labels
            .last()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(invalid(attr, name, "the top level domain is all digits"));
    }
    Ok(())
}

/// A domain as DNS names end: with a single trailing dot.
pub fn absolute(domain: &str) -> String {
    format!("{}.", domain.trim_end_matches('.'))
}

/// The `dns_assignment` of a port with `dns_name` and `fixed_ips`, under `domain`.
pub fn assignment(dns_name: &str, fixed_ips: &Value, domain: &str) -> Value {
    let domain = absolute(domain);
    let items: Vec<Value> = fixed_ips
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip.get("ip_address").and_then(Value::as_str))
        .map(|ip| {
            let hostname = if dns_name.is_empty() {
                format!("host-{}", ip.replace(['.', ':'], "-"))
            } else {
                dns_name.trim_end_matches('.').to_string()
            };
            let fqdn = if dns_name.ends_with('.') {
                dns_name.to_string()
            } else {
                format!("{hostname}.{domain}")
            };
            json!({"hostname": hostname, "ip_address": ip, "fqdn": fqdn})
        })
        .collect();
    Value::Array(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_domains() {
        for ok in [
            "",
            "d1",
            "web-1",
            "a.example.org",
            "a.example.org.",
            "x1.y2",
        ] {
            assert!(check_dns_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "-a",
            "a-",
            "a_b",
            "a..b",
            "a.123",
            &"x".repeat(64),
            &"a.".repeat(130),
        ] {
            assert!(check_dns_name(bad).is_err(), "{bad}");
        }
        assert!(check_dns_domain("test.org.").is_ok());
        assert!(check_dns_domain("bad domain").is_err());
    }

    #[test]
    fn assignment_per_address() {
        let ips = json!([{"ip_address": "10.0.0.5"}, {"ip_address": "2001:db8::5"}]);
        let a = assignment("", &ips, "openstacklocal");
        assert_eq!(a[0]["hostname"], "host-10-0-0-5");
        assert_eq!(a[0]["fqdn"], "host-10-0-0-5.openstacklocal.");
        assert_eq!(a[1]["hostname"], "host-2001-db8--5");
        let a = assignment("web", &ips, "example.org.");
        assert_eq!(a[1]["fqdn"], "web.example.org.");
    }
}
