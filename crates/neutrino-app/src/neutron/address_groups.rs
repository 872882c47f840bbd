//! Address groups: named sets of CIDRs that security group rules name as their remote
//! (`remote_address_group_id`), shared through RBAC. Every rule naming a group holds a claim in
//! `agrule:<group>` (key `<rule project>/<rule id>`), so "in use" is one lookup and the
//! projects that depend on a sharing policy are read from the keys.

use ipnet::IpNet;
use neutrino_store::{Record, Tx};
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use async_trait::async_trait;
use neutrino_types::resources as spec;

use super::kind::Kind;
use super::view::{Need, View};
use super::{bump, relock, Collection, Doc};
use crate::{db, App, Context};

/// `/v2.0/address-groups`.
pub(super) static COLLECTION: Collection = Collection::new(
    "address-groups",
    "address_group",
    spec::ADDRESS_GROUP,
    &AddressGroups,
)
.untagged()
.shared_through_rbac();

/// Address groups, shared through RBAC policies; addresses change through actions.
struct AddressGroups;

#[async_trait]
impl Kind for AddressGroups {
    fn hides_from(&self, ctx: &Context, rec: &Record) -> bool {
        // Like Neutron, a shared address group is not revealed to those who may not change it.
        !ctx.owns(&rec.project_id)
    }

    async fn create(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        app.create_address_group(tx, ctx, body).await
    }

    async fn delete(
        &self,
        app: &App,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &Record,
        _view: &View,
    ) -> ApiResult<()> {
        app.delete_address_group(tx, rec).await
    }

    fn actions(&self) -> &'static [&'static str] {
        &["add_addresses", "remove_addresses"]
    }

    async fn action(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        rec: &mut Record,
        action: &str,
        body: Value,
    ) -> ApiResult<Value> {
        let doc = app.address_group_action(tx, rec, action, body).await?;
        let view = View::of(tx, &COLLECTION, std::slice::from_ref(rec), Need::Render).await?;
        let out = app.render_doc(&view, ctx, &COLLECTION, rec, doc);
        Ok(json!({ "address_group": out }))
    }
}

/// The claim scope of the rules naming `group`.
pub(super) fn rule_scope(group: &str) -> String {
    format!("agrule:{group}")
}

/// Projects of the rules that name `group` (one entry per rule).
pub(super) async fn rule_projects(tx: &mut Tx, group: &str) -> ApiResult<Vec<String>> {
    let keys = tx
        .claimed_keys(&rule_scope(group), "", None, i64::MAX)
        .await
        .map_err(db)?;
    Ok(keys
        .into_iter()
        .filter_map(|k| k.split_once('/').map(|(p, _)| p.to_string()))
        .collect())
}

/// Records that `rule` (of `project`) names `group`.
pub(super) async fn claim_rule(
    tx: &mut Tx,
    group: &str,
    project: &str,
    rule: &str,
) -> ApiResult<()> {
    tx.claim(&rule_scope(group), &format!("{project}/{rule}"), rule)
        .await
        .map_err(db)?;
    Ok(())
}

/// Neutron's `validate_subnet`: a CIDR with an explicit prefix length; an IPv4 one must be
/// written canonically (`10.0.0.1/24` is fine, `10.0.0.1/024` or `10.0.0.1` are not).
fn strict_cidr(v: &Value) -> ApiResult<IpNet> {
    let text = v.as_str().unwrap_or_default();
    let net: Option<IpNet> = text.parse().ok();
    match net {
        Some(IpNet::V4(n)) if n.to_string() == text => Ok(IpNet::V4(n)),
        Some(n @ IpNet::V6(_)) => Ok(n),
        _ => Err(ApiError::bad_request(format!(
            "Invalid input for addresses. Reason: '{}' is not a valid IP subnet.",
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        ))),
    }
}

/// A network as `add_addresses` / `remove_addresses` take it: a CIDR or a bare address.
fn loose_cidr(v: &Value) -> ApiResult<IpNet> {
    let text = v.as_str().unwrap_or_default();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| {
            ApiError::bad(
                "AddrFormatError",
                format!("invalid IPNetwork {}", v.as_str().unwrap_or(&v.to_string())),
            )
        })
}

/// The stored form of a network: its network address and prefix length.
fn normalize(net: IpNet) -> String {
    net.trunc().to_string()
}

/// The `addresses` list of an action body, normalised and without repeats.
fn requested(body: &Value) -> ApiResult<Vec<String>> {
    let list = body
        .get("addresses")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::bad_request("Invalid input for addresses. Reason: not a list."))?;
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for v in list {
        let n = normalize(loose_cidr(v)?);
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

fn addresses(group: &Value) -> Vec<String> {
    group["addresses"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

impl App {
    pub(super) async fn create_address_group(
        &self,
        _tx: &mut Tx,
        _ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        let list = match body.remove("addresses") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(list)) => list,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "Invalid input for addresses. Reason: '{other}' is not a list."
                )))
            }
        };
        let mut seen: Vec<&Value> = Vec::new();
        let mut out: Vec<String> = Vec::new();
        for v in &list {
            if seen.contains(&v) {
                return Err(ApiError::bad_request(format!(
                    "Invalid input for addresses. Reason: Duplicate items in the list: '{}'.",
                    v.as_str().unwrap_or_default()
                )));
            }
            seen.push(v);
            let n = normalize(strict_cidr(v)?);
            if !out.contains(&n) {
                out.push(n);
            }
        }
        body.insert("addresses".into(), json!(out));
        Ok(None)
    }

    pub(super) async fn delete_address_group(&self, tx: &mut Tx, rec: &Record) -> ApiResult<()> {
        // The row lock orders this delete against a rule being created that names the group.
        tx.lock("address_group", &rec.id).await.map_err(db)?;
        if tx.count_claims(&rule_scope(&rec.id)).await.map_err(db)? > 0 {
            return Err(ApiError::conflict(
                "AddressGroupInUse",
                format!(
                    "Address group {} is in use on one or more security group rules.",
                    rec.id
                ),
            ));
        }
        self.delete_object_policies(tx, &rec.id).await
    }

    /// `add_addresses` / `remove_addresses`: all or nothing; returns `{"address_group": ...}`.
    pub(super) async fn address_group_action(
        &self,
        tx: &mut Tx,
        rec: &mut Record,
        action: &str,
        body: Value,
    ) -> ApiResult<Doc> {
        relock(tx, rec).await?;
        let wanted = requested(&body)?;
        let mut current = addresses(&rec.body);
        let (present, absent): (Vec<String>, Vec<String>) =
            wanted.into_iter().partition(|a| current.contains(a));
        if action == "add_addresses" {
            if !present.is_empty() {
                return Err(ApiError::bad(
                    "AddressesAlreadyExist",
                    format!(
                        "Addresses {present:?} already exist in the address group {}.",
                        rec.id
                    ),
                ));
            }
            current.extend(absent);
        } else {
            if !absent.is_empty() {
                return Err(ApiError::new(
                    404,
                    "AddressesNotFound",
                    format!(
                        "Addresses {absent:?} not found in the address group {}.",
                        rec.id
                    ),
                ));
            }
            current.retain(|a| !present.contains(a));
        }
        rec.body["addresses"] = json!(current);
        bump(&mut rec.body);
        tx.update("address_group", &rec.id, &rec.body)
            .await
            .map_err(db)?;
        Ok(rec.body.as_object().cloned().unwrap_or_default())
    }

    /// Checks that a rule of `project` may name address group `id` (it exists and the project
    /// owns it or has it shared), and locks the group's row until the rule is stored.
    pub(super) async fn check_rule_address_group(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        project: &str,
        id: &str,
    ) -> ApiResult<()> {
        let not_found = || ApiError::not_found("address_group", id);
        if !neutrino_types::attrs::is_uuid(id) || !tx.lock("address_group", id).await.map_err(db)? {
            return Err(not_found());
        }
        let group = tx
            .get("address_group", id)
            .await
            .map_err(db)?
            .ok_or_else(not_found)?;
        if ctx.is_admin() || group.project_id == project {
            return Ok(());
        }
        let view = super::View::check(tx, &COLLECTION, std::slice::from_ref(&group)).await?;
        if view.granted(id, "access_as_shared", project) {
            Ok(())
        } else {
            Err(not_found())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_takes_canonical_cidrs_only() {
        assert!(strict_cidr(&json!("10.10.10.3/32")).is_ok());
        assert_eq!(
            normalize(strict_cidr(&json!("192.168.0.10/24")).unwrap()),
            "192.168.0.0/24"
        );
        assert_eq!(
            normalize(strict_cidr(&json!("2001:db8::f00/64")).unwrap()),
            "2001:db8::/64"
        );
        assert_eq!(strict_cidr(&json!("10.20.30.40")).unwrap_err().status, 400);
        assert_eq!(strict_cidr(&json!("10.0.0.1/024")).unwrap_err().status, 400);
        assert_eq!(strict_cidr(&json!("this is bad")).unwrap_err().status, 400);
    }

    #[test]
    fn actions_take_bare_addresses() {
        assert_eq!(
            normalize(loose_cidr(&json!("10.20.30.40")).unwrap()),
            "10.20.30.40/32"
        );
        assert_eq!(
            normalize(loose_cidr(&json!("2001:db8::1")).unwrap()),
            "2001:db8::1/128"
        );
        let e = loose_cidr(&json!("this is bad IP address")).unwrap_err();
        assert_eq!((e.status, e.kind.as_str()), (400, "AddrFormatError"));
    }
}
