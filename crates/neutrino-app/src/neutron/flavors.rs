//! Service flavors, wire-compatible with Neutron's `flavors` extension: `/v2.0/flavors`,
//! `/v2.0/service_profiles`, the bindings between them
//! (`/v2.0/flavors/{id}/service_profiles[/{profile}]`), a flavor's `next_providers`, and
//! `GET /v2.0/service-providers` (`service-type`). Admin-only but for reading flavors and
//! providers, as upstream's policy.
//!
//! A flavor's bound profiles are the list `service_profiles` in its own document; each
//! binding is also the claim `flavorsp:<profile>` keyed and owned by the flavor, so "is this
//! profile in use" is one lookup and deleting a flavor releases its bindings with
//! `release_owned`.

use async_trait::async_trait;
use neutrino_store::{Record, Tx};
use neutrino_types::attrs::is_uuid;
use neutrino_types::flavors::{self as spec, providers_of_driver, PROVIDERS, SERVICE_TYPES};
use neutrino_types::query;
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use super::kind::{apply_changes, FamilyKind, Kind};
use super::{lock_existing, Collection, Doc, View};
use crate::{db, App, Context};

/// `/v2.0/flavors`.
pub(crate) static FLAVORS: Collection =
    Collection::family("flavors", &FlavorKind::new("flavor", spec::FLAVOR));

/// `/v2.0/service_profiles`.
pub(crate) static SERVICE_PROFILES: Collection = Collection::family(
    "service_profiles",
    &FlavorKind::new("service_profile", spec::SERVICE_PROFILE),
);

/// The claims of routers made with a flavor: scope `router-flavor:<flavor>`, key and owner
/// the router (a flavor in use is not deleted).
pub(super) const ROUTER_FLAVOR_PREFIX: &str = "router-flavor:";

/// Marks the flavors extension's kinds.
struct Flavors;

/// A flavor or a service profile (`resource` tells them apart).
type FlavorKind = FamilyKind<Flavors>;

/// The claim scope of the flavors bound to `profile` (key and owner: the flavor).
fn binding_scope(profile: &str) -> String {
    format!("flavorsp:{profile}")
}

fn profile_not_found(id: &str) -> ApiError {
    ApiError::new(
        404,
        "ServiceProfileNotFound",
        format!("Service Profile {id} could not be found."),
    )
}

fn flavor_not_found(id: &str) -> ApiError {
    ApiError::new(
        404,
        "FlavorNotFound",
        format!("Flavor {id} could not be found."),
    )
}

fn binding_not_found(profile: &str, flavor: &str) -> ApiError {
    ApiError::new(
        404,
        "FlavorServiceProfileBindingNotFound",
        format!("Service Profile {profile} is not associated with flavor {flavor}."),
    )
}

/// The profile ids of a flavor document.
fn bound_profiles(doc: &Value) -> Vec<String> {
    doc["service_profiles"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Binds `flavor` to each of `profiles` (each must exist; locked so it cannot go meanwhile).
async fn bind_all(tx: &mut Tx, flavor: &str, profiles: &[String]) -> ApiResult<()> {
    tx.release_owned("flavorsp:", flavor).await.map_err(db)?;
    for profile in profiles {
        tx.lock("service_profile", profile).await.map_err(db)?;
        if tx
            .get("service_profile", profile)
            .await
            .map_err(db)?
            .is_none()
        {
            return Err(profile_not_found(profile));
        }
        tx.claim(&binding_scope(profile), flavor, flavor)
            .await
            .map_err(db)?;
    }
    Ok(())
}

/// Refuses changing or deleting a profile a flavor is bound to.
async fn ensure_profile_unused(tx: &mut Tx, profile: &str) -> ApiResult<()> {
    if tx.count_claims(&binding_scope(profile)).await.map_err(db)? > 0 {
        return Err(ApiError::conflict(
            "ServiceProfileInUse",
            format!("Service Profile {profile} is used by some service instance."),
        ));
    }
    Ok(())
}

/// A profile's driver must be a provider's (404 otherwise); without a driver it needs
/// metainfo (400).
fn check_driver(driver: &str, metainfo: &Value) -> ApiResult<()> {
    if !driver.is_empty() {
        if providers_of_driver(driver).next().is_none() {
            return Err(ApiError::new(
                404,
                "ServiceProfileDriverNotFound",
                format!("Service Profile driver {driver} could not be found."),
            ));
        }
        return Ok(());
    }
    let empty = match metainfo {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        _ => false,
    };
    if empty {
        return Err(ApiError::bad(
            "ServiceProfileEmpty",
            "Service Profile needs either a driver or metainfo.",
        ));
    }
    Ok(())
}

#[async_trait]
impl Kind for FlavorKind {
    fn visible_to_others(&self, _view: &View, _ctx: &Context, _rec: &Record) -> bool {
        // Flavors are the operator's catalogue: every project reads them (`get_flavor`).
        self.resource == "flavor"
    }

    fn check_request(&self, body: &Doc) -> ApiResult<()> {
        if self.resource != "flavor" {
            return Ok(());
        }
        if let Some(t) = body.get("service_type") {
            let known = t.as_str().filter(|t| SERVICE_TYPES.contains(t));
            if known.is_none() {
                let shown = t
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| t.to_string());
                return Err(ApiError::bad(
                    "InvalidServiceType",
                    format!("Invalid service type {shown}."),
                ));
            }
        }
        for id in body
            .get("service_profiles")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let id = id.as_str().unwrap_or_default();
            if !is_uuid(id) {
                return Err(ApiError::bad_request(format!(
                    "Invalid input for service_profiles. Reason: '{id}' is not a valid UUID."
                )));
            }
        }
        Ok(())
    }

    async fn create(
        &self,
        _app: &App,
        tx: &mut Tx,
        _ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        let id = body
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if self.resource == "flavor" {
            let doc = Value::Object(body.clone());
            bind_all(tx, &id, &bound_profiles(&doc)).await?;
        } else {
            let driver = body.get("driver").and_then(Value::as_str).unwrap_or("");
            check_driver(driver, body.get("metainfo").unwrap_or(&Value::Null))?;
        }
        Ok(None)
    }

    async fn update(
        &self,
        _app: &App,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &mut Record,
        changes: Doc,
    ) -> ApiResult<()> {
        if self.resource == "flavor" {
            if let Some(list) = changes.get("service_profiles") {
                let profiles = bound_profiles(&json!({ "service_profiles": list }));
                bind_all(tx, &rec.id, &profiles).await?;
            }
        } else {
            ensure_profile_unused(tx, &rec.id).await?;
            if let Some(driver) = changes.get("driver").and_then(Value::as_str) {
                if !driver.is_empty() && providers_of_driver(driver).next().is_none() {
                    check_driver(driver, &Value::Null)?;
                }
            }
        }
        apply_changes(rec, changes);
        Ok(())
    }

    async fn delete(
        &self,
        _app: &App,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &Record,
        _view: &View,
    ) -> ApiResult<()> {
        if self.resource == "flavor" {
            let users = tx
                .claimed_keys(&format!("{ROUTER_FLAVOR_PREFIX}{}", rec.id), "", None, 1)
                .await
                .map_err(db)?;
            if !users.is_empty() {
                return Err(ApiError::conflict(
                    "FlavorInUse",
                    format!("Flavor {} is used by some service instance.", rec.id),
                ));
            }
            tx.release_owned("flavorsp:", &rec.id).await.map_err(db)?;
        } else {
            ensure_profile_unused(tx, &rec.id).await?;
        }
        Ok(())
    }
}

impl App {
    /// A new router's `flavor_id` (`l3-flavors`): the flavor (locked; 404), of the L3 service
    /// (400), enabled (400), with an enabled bound profile whose provider decides; a request
    /// that also sets `ha` or `distributed` is refused (400). The router is recorded as the
    /// flavor's user. Returns the provider's `(ha, distributed)`, or `None` without a flavor.
    pub(super) async fn router_flavour_on_create(
        &self,
        tx: &mut Tx,
        body: &Doc,
    ) -> ApiResult<Option<(bool, bool)>> {
        let Some(flavor) = body.get("flavor_id").and_then(Value::as_str) else {
            return Ok(None);
        };
        if ["ha", "distributed"].iter().any(|k| body.contains_key(*k)) {
            return Err(ApiError::bad(
                "BadRequest",
                "Bad router request: Cannot specify both ha or distributed and flavor_id.",
            ));
        }
        let rec = self.locked_flavor(tx, flavor).await?;
        if rec.body["service_type"] != "L3_ROUTER_NAT" {
            return Err(ApiError::bad(
                "InvalidFlavorServiceType",
                format!("Invalid service type {}.", rec.body["service_type"]),
            ));
        }
        if rec.body["enabled"] == false {
            return Err(ApiError::bad("FlavorDisabled", "Flavor is not enabled."));
        }
        let mut provider = None;
        for id in bound_profiles(&rec.body) {
            let Some(profile) = tx.get("service_profile", &id).await.map_err(db)? else {
                continue;
            };
            if profile.body["enabled"] == false {
                continue;
            }
            let driver = profile.body["driver"].as_str().unwrap_or_default();
            provider = providers_of_driver(driver).next();
            if provider.is_some() {
                break;
            }
        }
        let Some(provider) = provider else {
            return Err(ApiError::bad(
                "BadRequest",
                format!("Bad router request: flavor {flavor} has no enabled service profile of an L3 provider."),
            ));
        };
        let router = body.get("id").and_then(Value::as_str).unwrap_or_default();
        tx.claim(&format!("{ROUTER_FLAVOR_PREFIX}{flavor}"), router, router)
            .await
            .map_err(db)?;
        Ok(Some((provider.ha, provider.distributed)))
    }

    /// The flavor `id`, locked (404 `FlavorNotFound`).
    async fn locked_flavor(&self, tx: &mut Tx, id: &str) -> ApiResult<Record> {
        lock_existing(tx, "flavor", id, || flavor_not_found(id)).await
    }

    /// `POST /v2.0/flavors/{id}/service_profiles`: binds a profile to a flavor.
    pub async fn bind_flavor_profile(
        &self,
        ctx: &Context,
        flavor: &str,
        body: Value,
    ) -> ApiResult<Value> {
        self.check_rule(ctx, "create_flavor_service_profile", &Default::default())?;
        let profile = body["service_profile"]["id"]
            .as_str()
            .filter(|id| is_uuid(id))
            .map(str::to_string)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "Invalid input for id. Reason: a service profile's UUID is required.",
                )
            })?;
        let mut tx = self.write().await?;
        let mut rec = self.locked_flavor(&mut tx, flavor).await?;
        let mut profiles = bound_profiles(&rec.body);
        if profiles.contains(&profile) {
            return Err(ApiError::conflict(
                "FlavorServiceProfileBindingExists",
                format!("Service Profile {profile} is already associated with flavor {flavor}."),
            ));
        }
        profiles.push(profile.clone());
        bind_all(&mut tx, flavor, &profiles).await?;
        rec.body["service_profiles"] = json!(profiles);
        tx.update("flavor", flavor, &rec.body).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(json!({"service_profile": {"id": profile}}))
    }

    /// `GET /v2.0/flavors/{id}/service_profiles/{profile}`.
    pub async fn flavor_profile(
        &self,
        ctx: &Context,
        flavor: &str,
        profile: &str,
    ) -> ApiResult<Value> {
        self.check_rule(ctx, "get_flavor_service_profile", &Default::default())?;
        let mut tx = self.read().await?;
        let rec = tx
            .get("flavor", flavor)
            .await
            .map_err(db)?
            .ok_or_else(|| flavor_not_found(flavor))?;
        if !bound_profiles(&rec.body).iter().any(|p| p == profile) {
            return Err(binding_not_found(profile, flavor));
        }
        Ok(json!({"service_profile": {"service_profile_id": profile, "flavor_id": flavor}}))
    }

    /// `DELETE /v2.0/flavors/{id}/service_profiles/{profile}`.
    pub async fn unbind_flavor_profile(
        &self,
        ctx: &Context,
        flavor: &str,
        profile: &str,
    ) -> ApiResult<()> {
        self.check_rule(ctx, "delete_flavor_service_profile", &Default::default())?;
        let mut tx = self.write().await?;
        let mut rec = self.locked_flavor(&mut tx, flavor).await?;
        let mut profiles = bound_profiles(&rec.body);
        if !profiles.iter().any(|p| p == profile) {
            return Err(binding_not_found(profile, flavor));
        }
        profiles.retain(|p| p != profile);
        tx.release(&binding_scope(profile), flavor)
            .await
            .map_err(db)?;
        rec.body["service_profiles"] = json!(profiles);
        tx.update("flavor", flavor, &rec.body).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    /// `GET /v2.0/flavors/{id}/next_providers`: the provider of the flavor's first bound
    /// profile.
    pub async fn flavor_next_providers(&self, ctx: &Context, flavor: &str) -> ApiResult<Value> {
        self.check_rule(ctx, "get_flavor", &Default::default())?;
        let mut tx = self.read().await?;
        let rec = tx
            .get("flavor", flavor)
            .await
            .map_err(db)?
            .ok_or_else(|| flavor_not_found(flavor))?;
        let first = bound_profiles(&rec.body).into_iter().next();
        let Some(profile_id) = first else {
            return Err(binding_not_found("", flavor));
        };
        let profile = tx
            .get("service_profile", &profile_id)
            .await
            .map_err(db)?
            .ok_or_else(|| profile_not_found(&profile_id))?;
        if profile.body["enabled"] == false {
            return Err(ApiError::new(
                503,
                "ServiceProfileDisabled",
                "Service Profile is not enabled.",
            ));
        }
        let driver = profile.body["driver"].as_str().unwrap_or_default();
        let provider = providers_of_driver(driver).next().ok_or_else(|| {
            ApiError::new(
                404,
                "ServiceProfileDriverNotFound",
                format!("Service Profile driver {driver} could not be found."),
            )
        })?;
        Ok(json!({"next_providers": [{
            "driver": driver, "provider": provider.name,
            "metainfo": profile.body["metainfo"],
        }]}))
    }

    /// `GET /v2.0/service-providers`, with filters, sorting, paging and `fields`.
    pub fn service_providers(
        &self,
        ctx: &Context,
        pairs: &[(String, String)],
    ) -> ApiResult<Vec<Doc>> {
        self.check_rule(ctx, "get_service_provider", &Default::default())?;
        let q = query::parse(pairs, SERVICE_PROVIDER_SPEC, &[])?;
        let items: Vec<Doc> = PROVIDERS
            .iter()
            .filter_map(|p| p.to_json().as_object().cloned())
            .filter(|d| query::matches(d, &q))
            .collect();
        let fields = q.fields.clone();
        Ok(query::page(items, &q, "service_provider")?
            .items
            .into_iter()
            .map(|d| query::project(d, &fields))
            .collect())
    }
}

/// The attributes of a service provider, for filters and sorting.
const SERVICE_PROVIDER_SPEC: &[neutrino_types::attrs::Attr] = &[
    neutrino_types::attrs::ro("service_type"),
    neutrino_types::attrs::ro("name"),
    neutrino_types::attrs::ro("driver"),
    neutrino_types::attrs::ro("default"),
];
