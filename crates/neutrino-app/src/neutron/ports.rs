//! Ports: MAC generation, fixed IP allocation (explicit, any-from-subnet, automatic, SLAAC),
//! security groups, allowed address pairs, extra DHCP options and binding attributes.
//!
//! Every address and MAC is a store claim (`ip:<subnet>` / `mac:<network>` scopes, owner =
//! port id), so the database refuses duplicates even across servers; the free-address search
//! reads claimed addresses in batches from a random point of the pools (`neutrino-ipam`).

use std::net::IpAddr;

use neutrino_ipam::{self as ipam, FreeAddressSearch, SearchStep};
use neutrino_store::{Record, Selector, Tx};
use neutrino_types::attrs::is_uuid;
use neutrino_types::query::ListQuery;
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use async_trait::async_trait;
use neutrino_types::resources as spec;

use super::authz::{network_parent, Extras};
use super::kind::{Kind, ListFilter};
use super::owners::{
    is_network_owned, DHCP_OWNER, GATEWAY_OWNER, INTERFACE_OWNERS, ROUTER_OWNERS, SNAT_OWNER,
    UNDELETABLE_OWNERS,
};
use super::scopes::ip_scope;
use super::subnets::SubnetInfo;
use super::view::{narrow, own_ids, parent_ids, Need};
use super::{s, Collection, Doc, View};
use crate::{db, App, Context};

/// `/v2.0/ports`.
pub(super) static COLLECTION: Collection = Collection::new("ports", "port", spec::PORT, &Ports)
    .parent("network_id")
    .filters(&["ip_address", "subnet_id"]);

/// Ports: children of networks; the network's owner sees and may delete them.
struct Ports;

#[async_trait]
impl Kind for Ports {
    async fn load_view(
        &self,
        tx: &mut Tx,
        records: &[Record],
        view: &mut View,
        need: Need,
    ) -> ApiResult<()> {
        if need == Need::Check {
            view.load_rbac(tx, narrow(parent_ids(records))).await?;
            view.load_networks(tx, narrow(parent_ids(records))).await?;
        }
        // A new port is no trunk's parent yet.
        if need != Need::Created {
            view.load_trunk_details(tx, narrow(own_ids(records)))
                .await?;
        }
        Ok(())
    }

    fn visible_to_others(&self, view: &View, ctx: &Context, rec: &Record) -> bool {
        let net = rec.parent_id.as_deref().and_then(|n| view.networks.get(n));
        net.is_some_and(|net| net.project_id == ctx.project_id)
    }

    fn check_request(&self, body: &Doc) -> ApiResult<()> {
        if let Some(name) = body.get("dns_name").and_then(Value::as_str) {
            neutrino_types::dns::check_dns_name(name)?;
        }
        if let Some(domain) = body.get("dns_domain").and_then(Value::as_str) {
            neutrino_types::dns::check_dns_domain(domain)?;
        }
        Ok(())
    }

    fn render(&self, view: &View, _ctx: &Context, rec: &Record, doc: &mut Doc) {
        if !doc.contains_key("dns_assignment") {
            // Ports stored before DNS integration: under the default domain.
            let name = s(&rec.body, "dns_name");
            let a = neutrino_types::dns::assignment(name, &rec.body["fixed_ips"], "openstacklocal");
            doc.insert("dns_assignment".into(), a);
            doc.entry("dns_name").or_insert(json!(""));
            doc.entry("dns_domain").or_insert(json!(""));
        }
        if let Some(details) = view.trunk_details.get(&rec.id) {
            doc.insert("trunk_details".into(), details.clone());
        }
        let trusted = rec.body["binding:profile"]
            .get("trusted")
            .cloned()
            .unwrap_or(Value::Null);
        doc.insert("trusted".into(), trusted);
    }

    fn policy_extras(&self, view: &View, ctx: &Context, rec: &Record) -> Extras {
        // The network's owner may also read and delete other projects' ports on it.
        network_parent(view, ctx, rec)
    }

    fn foreign_project(&self, _action: &str, project: &str) -> ApiError {
        ApiError::bad_request(format!(
            "Tenant {project} not allowed to create port on this network"
        ))
    }

    fn list_filter(&self, q: &mut ListQuery) -> Option<ListFilter> {
        let filters = fixed_ip_filters(q);
        if filters.is_empty() {
            return None;
        }
        Some(Box::new(move |_, _, rec| {
            matches_fixed_ips(&rec.body, &filters)
        }))
    }

    async fn create(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        super::qos::bind_on_create(tx, ctx, "port", body).await?;
        if let Some(trusted) = body.remove("trusted").filter(|t| !t.is_null()) {
            let profile = body.entry("binding:profile").or_insert_with(|| json!({}));
            profile["trusted"] = trusted;
        }
        let parent = app.create_port(tx, ctx, body).await?;
        app.assign_dns(body);
        Ok(parent)
    }

    async fn update(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        rec: &mut Record,
        mut changes: Doc,
    ) -> ApiResult<()> {
        if let Some(trusted) = changes.remove("trusted") {
            let mut profile = changes
                .get("binding:profile")
                .cloned()
                .unwrap_or_else(|| rec.body["binding:profile"].clone());
            if !profile.is_object() {
                profile = json!({});
            }
            match trusted {
                Value::Null => drop(profile.as_object_mut().map(|p| p.remove("trusted"))),
                t => profile["trusted"] = t,
            }
            changes.insert("binding:profile".into(), profile);
        }
        if let Some(new) = changes.get("qos_policy_id") {
            let old = rec.body.get("qos_policy_id").and_then(Value::as_str);
            super::qos::rebind(tx, ctx, "port", &rec.id, &rec.project_id, old, new.as_str())
                .await?;
        }
        app.update_port(tx, rec, changes).await?;
        if let Some(doc) = rec.body.as_object_mut() {
            app.assign_dns(doc);
        }
        Ok(())
    }

    async fn delete(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        rec: &Record,
        _view: &View,
    ) -> ApiResult<()> {
        app.delete_port(tx, ctx, rec).await
    }

    async fn after_delete(&self, app: &App, tx: &mut Tx, rec: &Record) -> ApiResult<()> {
        super::qos::unbind(tx, "port", rec).await?;
        if s(&rec.body, "device_owner") == DHCP_OWNER {
            app.sync_dhcp_port(tx, rec.parent_id.as_deref().unwrap_or_default())
                .await?;
        }
        Ok(())
    }
}

/// Neutron's `max_fixed_ips_per_port`; not applied to its own trusted `network:*` ports (a
/// network's DHCP port holds an address on every DHCP-enabled subnet, however many).
const MAX_FIXED_IPS: usize = 5;
const MAX_ADDRESS_PAIRS: usize = 10;
const SEARCH_BATCH: usize = 64;

fn mac_scope(network: &str) -> String {
    format!("mac:{network}")
}

/// `fixed_ips` list filters: `ip_address=...` / `subnet_id=...` / `ip_address_substr=...`.
pub(super) fn fixed_ip_filters(q: &mut ListQuery) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(values) = q.take_filter("fixed_ips") {
        for v in values {
            if let Some((k, val)) = v.as_str().and_then(|t| t.split_once('=')) {
                out.push((k.to_string(), val.to_string()));
            }
        }
    }
    for key in ["ip_address", "subnet_id"] {
        if let Some(values) = q.take_filter(key) {
            out.extend(
                values
                    .iter()
                    .filter_map(|v| v.as_str())
                    .map(|v| (key.to_string(), v.to_string())),
            );
        }
    }
    out
}

/// Whether a port has a fixed IP matching the filters (same key = alternatives).
pub(super) fn matches_fixed_ips(port: &Value, filters: &[(String, String)]) -> bool {
    let ips = port
        .get("fixed_ips")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let keys: Vec<&str> = {
        let mut k: Vec<&str> = filters.iter().map(|(k, _)| k.as_str()).collect();
        k.dedup();
        k
    };
    keys.iter().all(|key| {
        filters.iter().filter(|(k, _)| k == key).any(|(_, want)| {
            ips.iter().any(|ip| match *key {
                "ip_address_substr" => s(ip, "ip_address").contains(want.as_str()),
                k => s(ip, k) == want,
            })
        })
    })
}

/// One requested fixed IP.
#[derive(Debug)]
struct Wanted {
    subnet: usize,
    ip: Option<IpAddr>,
}

fn bad_fixed_ip(v: &Value) -> ApiError {
    ApiError::bad_request(format!(
        "Invalid input for fixed_ips. Reason: Invalid data format for fixed IP: '{v}'."
    ))
}

impl App {
    /// Claims any free address of a subnet for `owner`, or None when the pools are full.
    async fn allocate_any(
        &self,
        tx: &mut Tx,
        subnet: &SubnetInfo,
        owner: &str,
    ) -> ApiResult<Option<IpAddr>> {
        let scope = ip_scope(&subnet.id);
        for _ in 0..8 {
            let start = {
                let mut rng = rand::thread_rng();
                ipam::random_start(&subnet.pools, &mut rng)
            };
            let Some(start) = start else { return Ok(None) };
            let mut search = FreeAddressSearch::new(&subnet.pools, start);
            loop {
                let from = ipam::ip_key(search.cursor());
                let below = search.upper_bound().map(ipam::ip_key);
                let keys = tx
                    .claimed_keys(&scope, &from, below.as_deref(), SEARCH_BATCH as i64)
                    .await
                    .map_err(db)?;
                let taken: Vec<IpAddr> = keys
                    .iter()
                    .filter_map(|k| ipam::ip_from_key(k, subnet.is_v6()).ok())
                    .collect();
                match search.feed(&taken, keys.len() < SEARCH_BATCH) {
                    SearchStep::Found(ip) => {
                        if tx
                            .claim(&scope, &ipam::ip_key(ip), owner)
                            .await
                            .map_err(db)?
                        {
                            return Ok(Some(ip));
                        }
                        break;
                    }
                    SearchStep::Continue => {}
                    SearchStep::Exhausted => return Ok(None),
                }
            }
        }
        Ok(None)
    }

    async fn claim_ip(
        &self,
        tx: &mut Tx,
        network: &str,
        subnet: &SubnetInfo,
        ip: IpAddr,
        owner: &str,
    ) -> ApiResult<()> {
        if tx
            .claim(&ip_scope(&subnet.id), &ipam::ip_key(ip), owner)
            .await
            .map_err(db)?
        {
            Ok(())
        } else {
            Err(ApiError::conflict(
                "IpAddressInUse",
                format!("Unable to complete operation for network {network}. The IP address {ip} is in use."),
            ))
        }
    }

    /// Computes and claims the fixed IPs of a port. `held` are addresses the port already
    /// owns (on update): requesting them again keeps them without a new claim.
    #[allow(clippy::too_many_arguments)]
    async fn assign_fixed_ips(
        &self,
        tx: &mut Tx,
        port_id: &str,
        network: &str,
        requested: Option<&Value>,
        mac: [u8; 6],
        device_owner: &str,
        held: &[(String, IpAddr)],
    ) -> ApiResult<Vec<Value>> {
        let subnet_records = self.network_subnets(tx, network).await?;
        let subnets: Vec<SubnetInfo> = subnet_records
            .iter()
            .filter_map(SubnetInfo::from_record)
            .collect();
        let mut wanted: Vec<Wanted> = Vec::new();
        let explicit = requested.is_some();
        if let Some(req) = requested {
            let list = req.as_array().ok_or_else(|| bad_fixed_ip(req))?;
            if list.len() > MAX_FIXED_IPS && !is_network_owned(device_owner) {
                return Err(ApiError::bad_request(
                    "Exceeded maximum amount of fixed ips per port.",
                ));
            }
            for entry in list {
                let obj = entry.as_object().ok_or_else(|| bad_fixed_ip(entry))?;
                if obj.keys().any(|k| k != "subnet_id" && k != "ip_address") {
                    return Err(bad_fixed_ip(entry));
                }
                let ip = match obj.get("ip_address") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(t)) => Some(ipam::parse_ip(t).map_err(|_| {
                        ApiError::bad_request(format!(
                            "Invalid input for fixed_ips. Reason: '{t}' is not a valid IP address."
                        ))
                    })?),
                    Some(_) => return Err(bad_fixed_ip(entry)),
                };
                let subnet = match obj.get("subnet_id") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(id)) => {
                        if !is_uuid(id) {
                            return Err(ApiError::bad_request(format!(
                                "Invalid input for fixed_ips. Reason: '{id}' is not a valid UUID."
                            )));
                        }
                        match subnets.iter().position(|sn| sn.id == *id) {
                            Some(i) => Some(i),
                            None if tx.get("subnet", id).await.map_err(db)?.is_some() => {
                                return Err(ApiError::invalid_input(format!(
                                    "Failed to create port on network {network}, because fixed_ips included invalid subnet {id}"
                                )))
                            }
                            None => return Err(ApiError::not_found("subnet", id)),
                        }
                    }
                    Some(_) => return Err(bad_fixed_ip(entry)),
                };
                let subnet = match (subnet, ip) {
                    (Some(i), Some(ip)) => {
                        if !subnets[i].cidr.contains(&ip) {
                            return Err(ApiError::bad(
                                "InvalidIpForSubnet",
                                format!("IP address {ip} is not a valid IP for the specified subnet."),
                            ));
                        }
                        i
                    }
                    (Some(i), None) => i,
                    (None, Some(ip)) => subnets.iter().position(|sn| sn.cidr.contains(&ip)).ok_or_else(|| {
                        ApiError::bad(
                            "InvalidIpForNetwork",
                            format!("IP address {ip} is not a valid IP for any of the subnets on the specified network."),
                        )
                    })?,
                    (None, None) => return Err(bad_fixed_ip(entry)),
                };
                if let Some(ip) = ip {
                    let sn = &subnets[subnet];
                    if sn.is_auto_address() && !ROUTER_OWNERS.contains(&device_owner) {
                        return Err(ApiError::invalid_input(format!(
                            "IPv6 address {ip} cannot be directly assigned to a port on subnet {} as the subnet is configured for automatic addresses",
                            sn.id
                        )));
                    }
                    if ipam::is_network_or_broadcast(sn.cidr, ip) {
                        return Err(ApiError::bad(
                            "InvalidIpForSubnet",
                            format!("IP address {ip} is not a valid IP for the specified subnet."),
                        ));
                    }
                }
                wanted.push(Wanted { subnet, ip });
            }
        }
        let mut out: Vec<(usize, IpAddr)> = Vec::new();
        // Explicit entries: exact addresses first, so "any" entries cannot take them.
        for w in wanted.iter().filter(|w| w.ip.is_some()) {
            let ip = w.ip.unwrap_or(IpAddr::from([0, 0, 0, 0]));
            let sn = &subnets[w.subnet];
            if out.iter().any(|(_, x)| *x == ip) {
                return Err(ApiError::bad_request(format!(
                    "Duplicate IP address '{ip}'"
                )));
            }
            if !held.iter().any(|(id, h)| *id == sn.id && *h == ip) {
                self.claim_ip(tx, network, sn, ip, port_id).await?;
            }
            out.push((w.subnet, ip));
        }
        for w in wanted.iter().filter(|w| w.ip.is_none()) {
            let sn = &subnets[w.subnet];
            if sn.is_auto_address() {
                continue; // added below with every automatic subnet
            }
            if let Some((_, ip)) = held
                .iter()
                .find(|(id, ip)| *id == sn.id && !out.iter().any(|(_, o)| o == ip))
            {
                out.push((w.subnet, *ip));
                continue;
            }
            match self.allocate_any(tx, sn, port_id).await? {
                Some(ip) => out.push((w.subnet, ip)),
                None => return Err(generation_failure(network)),
            }
        }
        if !explicit {
            for v6 in [false, true] {
                let of_version: Vec<usize> = (0..subnets.len())
                    .filter(|&i| subnets[i].is_v6() == v6 && !subnets[i].is_auto_address())
                    .collect();
                // Subnets reserved for this device owner first; else the unreserved ones.
                let reserved: Vec<usize> = of_version
                    .iter()
                    .copied()
                    .filter(|&i| subnets[i].service_types.iter().any(|t| t == device_owner))
                    .collect();
                let candidates: Vec<usize> = if reserved.is_empty() {
                    of_version
                        .iter()
                        .copied()
                        .filter(|&i| subnets[i].service_types.is_empty())
                        .collect()
                } else {
                    reserved
                };
                if candidates.is_empty() && !of_version.is_empty() {
                    return Err(ApiError::conflict(
                        "IpAddressGenerationFailureNoMatchingSubnet",
                        format!("No valid service subnet for the given device owner, network {network}, device owner {device_owner}."),
                    ));
                }
                if candidates.is_empty() {
                    continue;
                }
                let mut got = false;
                for i in candidates {
                    if let Some(ip) = self.allocate_any(tx, &subnets[i], port_id).await? {
                        out.push((i, ip));
                        got = true;
                        break;
                    }
                }
                if !got {
                    return Err(generation_failure(network));
                }
            }
        }
        let auto_wanted = |i: usize| {
            !explicit
                || wanted.iter().any(|w| w.subnet == i)
                || !ROUTER_OWNERS.contains(&device_owner)
        };
        if !ROUTER_OWNERS.contains(&device_owner) {
            for (i, sn) in subnets.iter().enumerate() {
                if !sn.is_auto_address() || out.iter().any(|(j, _)| *j == i) || !auto_wanted(i) {
                    continue;
                }
                let ipnet::IpNet::V6(prefix) = sn.cidr else {
                    continue;
                };
                let ip =
                    IpAddr::V6(ipam::eui64_address(prefix, mac).map_err(ApiError::invalid_input)?);
                if !held.iter().any(|(id, h)| *id == sn.id && *h == ip) {
                    self.claim_ip(tx, network, sn, ip, port_id).await?;
                }
                out.push((i, ip));
            }
        }
        Ok(out
            .into_iter()
            .map(|(i, ip)| json!({"subnet_id": subnets[i].id, "ip_address": ip.to_string()}))
            .collect())
    }

    /// Security groups a port of `project` may use: its own and those shared with it.
    async fn check_security_groups(
        &self,
        tx: &mut Tx,
        project: &str,
        groups: &Value,
    ) -> ApiResult<Vec<String>> {
        let list = groups.as_array().ok_or_else(|| {
            ApiError::bad_request("Invalid input for security_groups. Reason: not a list.")
        })?;
        let view = View::load(tx, "security_group").await?;
        let mut out: Vec<String> = Vec::new();
        for g in list {
            let id = g.as_str().filter(|id| is_uuid(id)).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "Invalid input for security_groups. Reason: '{g}' is not a valid UUID."
                ))
            })?;
            let sg = tx.get("security_group", id).await.map_err(db)?;
            let ok = sg.is_some_and(|sg| {
                sg.project_id == project || view.granted(id, "access_as_shared", project)
            });
            if !ok {
                return Err(ApiError::not_found("security_group", id));
            }
            if out.iter().any(|o| o == id) {
                return Err(ApiError::bad_request(format!(
                    "Invalid input for security_groups. Reason: Duplicate items in the list: '{id}'."
                )));
            }
            out.push(id.to_string());
        }
        let stateful: Vec<bool> = {
            let mut v = Vec::new();
            for id in &out {
                let sg = tx.get("security_group", id).await.map_err(db)?;
                v.push(sg.is_none_or(|g| g.body["stateful"] != false));
            }
            v
        };
        if stateful.iter().any(|s| *s) && stateful.iter().any(|s| !*s) {
            return Err(ApiError::conflict(
                "PortSecurityGroupsStatefulMismatch",
                "Cannot apply both stateful and stateless security groups on the same port at the same time.",
            ));
        }
        Ok(out)
    }

    async fn claim_groups(&self, tx: &mut Tx, port: &str, groups: &[String]) -> ApiResult<()> {
        tx.release_owned("sgport:", port).await.map_err(db)?;
        for g in groups {
            tx.claim(&format!("sgport:{g}"), port, port)
                .await
                .map_err(db)?;
        }
        Ok(())
    }

    pub(super) async fn create_port(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        let doc = Value::Object(body.clone());
        let id = s(&doc, "id").to_string();
        let project = s(&doc, "project_id").to_string();
        let network_id = s(&doc, "network_id").to_string();
        let found = tx.get("network", &network_id).await.map_err(db)?;
        // RBAC decides only for callers that neither own the network nor are admin.
        let needs_rbac = found.as_ref().is_some_and(|n| !ctx.owns(&n.project_id));
        let view = if needs_rbac {
            View::check(tx, &super::networks::COLLECTION, found.as_slice()).await?
        } else {
            View::default()
        };
        let network = found
            .filter(|n| view.network_visible(ctx, n))
            .ok_or_else(|| ApiError::not_found("network", &network_id))?;
        let device_owner = s(&doc, "device_owner").to_string();
        // Who may set which attribute (MAC, fixed IPs, binding, device owner, port
        // security, address pairs) the flow asked the policy before this.
        let mac = self
            .claim_mac(tx, &network_id, &id, doc.get("mac_address"))
            .await?;
        body.insert("mac_address".into(), json!(ipam::format_mac(mac)));
        let fixed = self
            .assign_fixed_ips(
                tx,
                &id,
                &network_id,
                doc.get("fixed_ips"),
                mac,
                &device_owner,
                &[],
            )
            .await?;
        body.insert("fixed_ips".into(), json!(fixed));
        let port_security = doc
            .get("port_security_enabled")
            .and_then(Value::as_bool)
            .unwrap_or_else(|| {
                network
                    .body
                    .get("port_security_enabled")
                    .and_then(Value::as_bool)
                    .unwrap_or(true)
            });
        body.insert("port_security_enabled".into(), json!(port_security));
        let groups = match doc.get("security_groups") {
            Some(v) if !v.is_null() => self.check_security_groups(tx, &project, v).await?,
            _ if port_security && !device_owner.starts_with("network:") => {
                vec![self.ensure_default_group(tx, &project).await?]
            }
            _ => Vec::new(),
        };
        if !port_security && !groups.is_empty() {
            return Err(ApiError::bad(
                "PortSecurityAndIPRequiredForSecurityGroups",
                "Port security must be enabled and port must have an IP address in order to use security groups.",
            ));
        }
        for g in &groups {
            tx.claim(&format!("sgport:{g}"), &id, &id)
                .await
                .map_err(db)?;
        }
        body.insert("security_groups".into(), json!(groups));
        let pairs =
            validate_address_pairs(doc.get("allowed_address_pairs").unwrap_or(&json!([])), mac)?;
        if !port_security && !pairs.is_empty() {
            return Err(address_pair_needs_security());
        }
        body.insert("allowed_address_pairs".into(), json!(pairs));
        let opts = merge_dhcp_opts(&[], doc.get("extra_dhcp_opts").unwrap_or(&json!([])))?;
        body.insert("extra_dhcp_opts".into(), json!(opts));
        body.insert("status".into(), json!("DOWN"));
        body.insert("binding:vif_type".into(), json!("unbound"));
        body.insert("binding:vif_details".into(), json!({}));
        body.insert("ip_allocation".into(), json!("immediate"));
        Ok(Some(network_id))
    }

    async fn claim_mac(
        &self,
        tx: &mut Tx,
        network: &str,
        owner: &str,
        requested: Option<&Value>,
    ) -> ApiResult<[u8; 6]> {
        let scope = mac_scope(network);
        match requested {
            Some(Value::String(text)) => {
                let mac = ipam::parse_mac(text).map_err(|_| {
                    ApiError::bad_request(format!("Invalid input for mac_address. Reason: '{text}' is not a valid MAC address."))
                })?;
                if !tx
                    .claim(&scope, &ipam::format_mac(mac), owner)
                    .await
                    .map_err(db)?
                {
                    return Err(ApiError::conflict(
                        "MacAddressInUse",
                        format!("Unable to complete operation for network {network}. The mac address {} is in use.", ipam::format_mac(mac)),
                    ));
                }
                Ok(mac)
            }
            Some(Value::Null) | None => {
                for _ in 0..16 {
                    let mac = {
                        let mut rng = rand::thread_rng();
                        ipam::random_mac(self.config().base_mac, &mut rng)
                    };
                    if tx
                        .claim(&scope, &ipam::format_mac(mac), owner)
                        .await
                        .map_err(db)?
                    {
                        return Ok(mac);
                    }
                }
                Err(
                    ApiError::unavailable("Unable to generate unique mac on network")
                        .with_type("MacAddressGenerationFailure"),
                )
            }
            Some(other) => Err(ApiError::bad_request(format!(
                "Invalid input for mac_address. Reason: '{other}' is not a valid MAC address."
            ))),
        }
    }

    pub(super) async fn update_port(
        &self,
        tx: &mut Tx,
        rec: &mut Record,
        changes: Doc,
    ) -> ApiResult<()> {
        let network_id = rec.parent_id.clone().unwrap_or_default();
        let host_changed = changes
            .get("binding:host_id")
            .is_some_and(|h| *h != rec.body["binding:host_id"]);
        let mut mac = ipam::parse_mac(s(&rec.body, "mac_address")).unwrap_or([0; 6]);
        if let Some(new_mac) = changes.get("mac_address") {
            if !s(&rec.body, "binding:host_id").is_empty()
                && s(&rec.body, "binding:vif_type") != "unbound"
            {
                return Err(ApiError::conflict(
                    "PortBound",
                    format!(
                        "Unable to complete operation on port {}, port is already bound.",
                        rec.id
                    ),
                ));
            }
            let old = s(&rec.body, "mac_address").to_string();
            let claimed = self
                .claim_mac(tx, &network_id, &rec.id, Some(new_mac))
                .await;
            match claimed {
                Ok(m) => {
                    if ipam::format_mac(m) != old {
                        tx.release(&mac_scope(&network_id), &old)
                            .await
                            .map_err(db)?;
                    }
                    mac = m;
                }
                Err(e)
                    if e.kind == "MacAddressInUse"
                        && new_mac.as_str().map(str::to_lowercase) == Some(old.clone()) => {}
                Err(e) => return Err(e),
            }
            rec.body["mac_address"] = json!(ipam::format_mac(mac));
        }
        if let Some(req) = changes.get("fixed_ips") {
            let held: Vec<(String, IpAddr)> = rec.body["fixed_ips"]
                .as_array()
                .map(|l| {
                    l.iter()
                        .filter_map(|e| {
                            Some((
                                s(e, "subnet_id").to_string(),
                                s(e, "ip_address").parse().ok()?,
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let owner = changes
                .get("device_owner")
                .and_then(Value::as_str)
                .unwrap_or(s(&rec.body, "device_owner"))
                .to_string();
            let fixed = self
                .assign_fixed_ips(tx, &rec.id, &network_id, Some(req), mac, &owner, &held)
                .await?;
            self.check_fip_fixed_ips_kept(tx, &rec.id, &fixed).await?;
            self.drop_port_forwardings(tx, &rec.id, &fixed).await?;
            for (subnet, ip) in &held {
                let kept = fixed
                    .iter()
                    .any(|f| s(f, "subnet_id") == subnet && s(f, "ip_address") == ip.to_string());
                if !kept {
                    tx.release(&ip_scope(subnet), &ipam::ip_key(*ip))
                        .await
                        .map_err(db)?;
                }
            }
            rec.body["fixed_ips"] = json!(fixed);
        }
        let port_security = changes
            .get("port_security_enabled")
            .and_then(Value::as_bool)
            .unwrap_or_else(|| rec.body["port_security_enabled"].as_bool().unwrap_or(true));
        if let Some(groups) = changes.get("security_groups") {
            let groups = if groups.is_null() {
                Vec::new()
            } else {
                self.check_security_groups(tx, &rec.project_id, groups)
                    .await?
            };
            if !port_security && !groups.is_empty() {
                return Err(ApiError::bad(
                    "PortSecurityAndIPRequiredForSecurityGroups",
                    "Port security must be enabled and port must have an IP address in order to use security groups.",
                ));
            }
            self.claim_groups(tx, &rec.id, &groups).await?;
            rec.body["security_groups"] = json!(groups);
        } else if !port_security
            && rec.body["security_groups"]
                .as_array()
                .is_some_and(|g| !g.is_empty())
        {
            return Err(ApiError::conflict(
                "PortSecurityPortHasSecurityGroup",
                "Port has security group associated. Cannot disable port security or ip address until security group is removed",
            ));
        }
        if let Some(pairs) = changes.get("allowed_address_pairs") {
            let pairs = if pairs.is_null() {
                Vec::new()
            } else {
                validate_address_pairs(pairs, mac)?
            };
            rec.body["allowed_address_pairs"] = json!(pairs);
        }
        if !port_security
            && rec.body["allowed_address_pairs"]
                .as_array()
                .is_some_and(|p| !p.is_empty())
        {
            return Err(address_pair_needs_security());
        }
        if let Some(opts) = changes.get("extra_dhcp_opts") {
            let current = rec.body["extra_dhcp_opts"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            rec.body["extra_dhcp_opts"] = json!(merge_dhcp_opts(&current, opts)?);
        }
        if let Some(host) = changes.get("binding:host_id") {
            rebind(&mut rec.body, host.as_str().unwrap_or_default());
        }
        for (key, value) in changes {
            if matches!(
                key.as_str(),
                "mac_address"
                    | "fixed_ips"
                    | "security_groups"
                    | "allowed_address_pairs"
                    | "extra_dhcp_opts"
            ) {
                continue;
            }
            rec.body[key.as_str()] = value;
        }
        if host_changed {
            self.subports_follow_parent(tx, rec).await?;
        }
        Ok(())
    }

    /// Returns a port's addresses, MAC and group memberships.
    pub(super) async fn release_port(&self, tx: &mut Tx, rec: &Record) -> ApiResult<()> {
        self.check_port_unused_by_sfc(tx, &rec.id).await?;
        self.check_port_untrunked(tx, &rec.id).await?;
        tx.release_owned("ip:", &rec.id).await.map_err(db)?;
        tx.release_owned("mac:", &rec.id).await.map_err(db)?;
        tx.release_owned("sgport:", &rec.id).await.map_err(db)?;
        Ok(())
    }

    pub(super) async fn delete_port(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        rec: &Record,
    ) -> ApiResult<()> {
        let owner = s(&rec.body, "device_owner");
        let _ = ctx;
        if UNDELETABLE_OWNERS.contains(&owner) {
            return Err(ApiError::conflict(
                "ServicePortInUse",
                format!("Port {} cannot be deleted directly via the port API: has device owner {owner}.", rec.id),
            ));
        }
        self.check_port_holds_no_local_ip(tx, &rec.id).await?;
        self.disassociate_port_fips(tx, &rec.id).await?;
        self.drop_port_forwardings(tx, &rec.id, &[]).await?;
        self.drop_port_local_ip_associations(tx, &rec.id).await?;
        self.drop_port_ndp_proxies(tx, &rec.id).await?;
        self.delete_logs_naming(tx, &rec.id).await?;
        self.release_port(tx, rec).await
    }

    /// Ports on a network, for in-use checks.
    pub(super) async fn network_ports(&self, tx: &mut Tx, network: &str) -> ApiResult<Vec<Record>> {
        let sel = Selector {
            parent_ids: Some(vec![network.to_string()]),
            ..Default::default()
        };
        tx.list("port", &sel).await.map_err(db)
    }

    /// Ports on a network whose `device_owner` is one of `owners` (an index lookup).
    pub(super) async fn network_ports_in_roles(
        &self,
        tx: &mut Tx,
        network: &str,
        owners: &[&str],
    ) -> ApiResult<Vec<Record>> {
        let sel = Selector {
            parent_ids: Some(vec![network.to_string()]),
            roles: Some(owners.iter().map(|o| o.to_string()).collect()),
            ..Default::default()
        };
        tx.list("port", &sel).await.map_err(db)
    }
}

/// Binds a port to `host` (empty: unbinds it); a moved or unbound port is down until the new
/// host's agent plugs it.
pub(super) fn rebind(port: &mut Value, host: &str) {
    if host != s(port, "binding:host_id") {
        port["binding:host_id"] = json!(host);
        port["status"] = json!("DOWN");
        port["binding:vif_type"] = json!("unbound");
        port["binding:vif_details"] = json!({});
    }
}

fn generation_failure(network: &str) -> ApiError {
    ApiError::conflict(
        "IpAddressGenerationFailure",
        format!("No more IP addresses available on network {network}."),
    )
}

fn address_pair_needs_security() -> ApiError {
    ApiError::conflict(
        "AddressPairAndPortSecurityRequired",
        "Port Security must be enabled in order to have allowed address pairs on a port.",
    )
}

fn validate_address_pairs(v: &Value, port_mac: [u8; 6]) -> ApiResult<Vec<Value>> {
    let list = v.as_array().ok_or_else(|| {
        ApiError::bad_request("Invalid input for allowed_address_pairs. Reason: not a list.")
    })?;
    if list.len() > MAX_ADDRESS_PAIRS {
        return Err(ApiError::bad(
            "AllowedAddressPairExhausted",
            format!("The number of allowed address pair exceeds the maximum {MAX_ADDRESS_PAIRS}."),
        ));
    }
    let mut out: Vec<Value> = Vec::new();
    for pair in list {
        let obj = pair.as_object().ok_or_else(|| {
            ApiError::bad_request(format!(
                "Invalid input for allowed_address_pairs. Reason: '{pair}' is not a dictionary."
            ))
        })?;
        if let Some(k) = obj
            .keys()
            .find(|k| *k != "ip_address" && *k != "mac_address")
        {
            return Err(ApiError::bad_request(format!(
                "Unrecognized attribute(s) '{k}'"
            )));
        }
        let ip = obj
            .get("ip_address")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ApiError::bad(
                    "AllowedAddressPairsMissingIP",
                    "AllowedAddressPair must contain ip_address",
                )
            })?;
        let valid =
            ipam::parse_ip(ip).is_ok() || (ip.contains('/') && ip.parse::<ipnet::IpNet>().is_ok());
        if !valid {
            return Err(ApiError::bad_request(format!(
                "Invalid input for allowed_address_pairs. Reason: '{ip}' is not a valid IP address."
            )));
        }
        let mac = match obj.get("mac_address") {
            None | Some(Value::Null) => port_mac,
            Some(Value::String(m)) => ipam::parse_mac(m).map_err(|_| {
                ApiError::bad_request(format!("Invalid input for allowed_address_pairs. Reason: '{m}' is not a valid MAC address."))
            })?,
            Some(other) => {
                return Err(ApiError::bad_request(format!("Invalid input for allowed_address_pairs. Reason: '{other}' is not a valid MAC address.")))
            }
        };
        let entry = json!({"ip_address": ip, "mac_address": ipam::format_mac(mac)});
        if out.contains(&entry) {
            return Err(ApiError::bad(
                "DuplicateAddressPairInRequest",
                format!(
                    "Request contains duplicate address pair: mac_address {} ip_address {ip}.",
                    ipam::format_mac(mac)
                ),
            ));
        }
        out.push(entry);
    }
    Ok(out)
}

/// Applies extra DHCP option changes: same name (and IP version) replaces, a null value
/// removes.
fn merge_dhcp_opts(current: &[Value], changes: &Value) -> ApiResult<Vec<Value>> {
    let list = changes.as_array().ok_or_else(|| {
        ApiError::bad_request("Invalid input for extra_dhcp_opts. Reason: not a list.")
    })?;
    let mut out: Vec<Value> = current.to_vec();
    for opt in list {
        let obj = opt.as_object().ok_or_else(|| {
            ApiError::bad_request(format!(
                "Invalid input for extra_dhcp_opts. Reason: '{opt}' is not a dictionary."
            ))
        })?;
        if let Some(k) = obj
            .keys()
            .find(|k| !matches!(k.as_str(), "opt_name" | "opt_value" | "ip_version"))
        {
            return Err(ApiError::bad_request(format!(
                "Invalid input for extra_dhcp_opts. Reason: unknown key '{k}'."
            )));
        }
        let name = obj
            .get("opt_name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                ApiError::bad_request(
                    "Invalid input for extra_dhcp_opts. Reason: opt_name is required.",
                )
            })?;
        let version = match obj.get("ip_version") {
            None | Some(Value::Null) => 4,
            Some(v) => match v
                .as_i64()
                .or_else(|| v.as_str().and_then(|t| t.parse().ok()))
            {
                Some(n @ (4 | 6)) => n,
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "Invalid input for extra_dhcp_opts. Reason: '{v}' is not in [4, 6]."
                    )))
                }
            },
        };
        out.retain(|o| !(s(o, "opt_name") == name && o["ip_version"].as_i64() == Some(version)));
        match obj.get("opt_value") {
            None | Some(Value::Null) => {}
            Some(Value::String(v)) if !v.is_empty() => {
                out.push(json!({"opt_name": name, "opt_value": v, "ip_version": version}));
            }
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                "Invalid input for extra_dhcp_opts. Reason: '{other}' is not a valid opt_value."
            )))
            }
        }
    }
    Ok(out)
}

impl App {
    /// A port's `dns_assignment` from its `dns_name` and addresses, under the server's DNS
    /// domain.
    pub(super) fn assign_dns(&self, doc: &mut Doc) {
        let name = doc.get("dns_name").and_then(Value::as_str).unwrap_or("");
        let fixed = doc.get("fixed_ips").cloned().unwrap_or(Value::Null);
        let a = neutrino_types::dns::assignment(name, &fixed, &self.config().dns_domain);
        doc.insert("dns_assignment".into(), a);
    }

    /// Creates a port owned by a service (router interface or gateway, floating IP) with the
    /// full port rules (addresses, MAC), bypassing caller policy. `fixed_ips` as in the API
    /// (`None` = automatic). Returns the stored record.
    pub(super) async fn insert_service_port(
        &self,
        tx: &mut Tx,
        project: &str,
        network: &str,
        fixed_ips: Option<Value>,
        device_owner: &str,
        device_id: &str,
    ) -> ApiResult<Record> {
        let service = Context::new("neutrino", project, &["admin".to_string()]);
        let id = crate::new_id();
        let mut body = Doc::new();
        body.insert("network_id".into(), json!(network));
        body.insert("name".into(), json!(""));
        body.insert("description".into(), json!(""));
        body.insert("admin_state_up".into(), json!(true));
        body.insert("device_owner".into(), json!(device_owner));
        body.insert("device_id".into(), json!(device_id));
        let router_port = device_owner == GATEWAY_OWNER
            || device_owner == SNAT_OWNER
            || INTERFACE_OWNERS.contains(&device_owner);
        let host = if router_port && super::router_flavour::bound_to_router_host(device_owner) {
            self.router_host(tx, device_id).await?
        } else if device_owner == DHCP_OWNER {
            // `dhcp<agent id>-<network id>`: the port is that agent's host's.
            let agent = device_id
                .strip_prefix("dhcp")
                .and_then(|rest| rest.strip_suffix(&format!("-{network}")))
                .unwrap_or_default();
            match tx.get("agent", agent).await.map_err(db)? {
                Some(rec) => s(&rec.body, "host").to_string(),
                None => String::new(),
            }
        } else {
            String::new()
        };
        body.insert("binding:host_id".into(), json!(host));
        body.insert("binding:vnic_type".into(), json!("normal"));
        body.insert("binding:profile".into(), json!({}));
        body.insert("tags".into(), json!([]));
        if let Some(ips) = fixed_ips {
            body.insert("fixed_ips".into(), ips);
        }
        super::stamp_new(&mut body, &id, project);
        let parent = self.create_port(tx, &service, &mut body).await?;
        let rec = Record {
            kind: "port".into(),
            id,
            project_id: project.to_string(),
            parent_id: parent,
            body: Value::Object(body),
        };
        tx.insert(&rec).await.map_err(db)?;
        Ok(rec)
    }

    /// Deletes a service port and returns its addresses.
    pub(super) async fn remove_service_port(&self, tx: &mut Tx, port: &Record) -> ApiResult<()> {
        self.release_port(tx, port).await?;
        tx.delete("port", &port.id).await.map_err(db)?;
        Ok(())
    }
}
