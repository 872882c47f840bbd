//! `/` and `/v2.0/...`: version documents, extensions, quotas, the resource collections,
//! their members and `/tags` sub-resources.

use axum::http::Method;
use axum::response::Response;
use neutrino_app::{extensions, Collection, Context};
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Map, Value};

use crate::reply::{empty, json, neutron_error};
use crate::{agent_caller, caller, ApiState, Request};

/// Routes one network API request.
pub(crate) async fn handle(state: &ApiState, req: &Request, trailing_slash: bool) -> Response {
    match route(state, req, trailing_slash).await {
        Ok(r) => r,
        Err(e) => neutron_error(&e),
    }
}

fn not_allowed() -> ApiError {
    ApiError::new(
        405,
        "HTTPMethodNotAllowed",
        "The method is not allowed for the requested resource.",
    )
}

fn versions(base: &str) -> Value {
    json!({"versions": [{"id": "v2.0", "status": "CURRENT",
                         "links": [{"rel": "self", "href": format!("{base}/v2.0/")}]}]})
}

fn resources(base: &str) -> Value {
    let items: Vec<Value> = ["network", "subnet", "port"]
        .iter()
        .map(|r| {
            json!({"name": r, "collection": format!("{r}s"),
                   "links": [{"rel": "self", "href": format!("{base}/v2.0/{r}s")}]})
        })
        .collect();
    json!({"resources": items})
}

async fn route(state: &ApiState, req: &Request, trailing_slash: bool) -> ApiResult<Response> {
    let seg: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let base = req.base.as_str();
    match seg.as_slice() {
        [] => {
            return match req.method {
                Method::GET => Ok(json(200, &versions(base))),
                _ => Err(not_allowed()),
            }
        }
        ["v2.0"] => {
            let _ = trailing_slash;
            return match req.method {
                Method::GET => Ok(json(200, &resources(base))),
                _ => Err(not_allowed()),
            };
        }
        ["v2.0", ..] => {}
        _ => return Err(ApiError::no_such_url()),
    }
    let rest = &seg[1..];
    // The revision waits are also an agent call; everything else refuses host agents.
    let ctx = match rest {
        ["neutrino", "revisions", _] => agent_caller(state, req).await?,
        _ => caller(state, req).await?,
    };
    match rest {
        ["neutrino", "revisions", revision] if req.method == Method::GET => {
            let revision = revision
                .parse::<i64>()
                .ok()
                .filter(|r| *r >= 0)
                .ok_or_else(|| ApiError::bad_request(format!("Invalid revision {revision:?}")))?;
            let timeout = wait_timeout(req, neutrino_app::barrier::MAX_WAIT_SECS)?;
            let hosts: std::collections::BTreeSet<String> = req
                .query
                .iter()
                .filter(|(k, _)| k == "host")
                .map(|(_, v)| v.clone())
                .collect();
            let only = (!hosts.is_empty()).then_some(&hosts);
            Ok(json(
                200,
                &state
                    .app
                    .revision_status_of(&ctx, revision, timeout, only)
                    .await?,
            ))
        }
        ["neutrino", "revisions", _] => Err(not_allowed()),
        ["neutrino", "topology"] if req.method == Method::GET => topology(state, req, &ctx).await,
        ["neutrino", "topology"] => Err(not_allowed()),
        ["neutrino", "host-credentials"] => match req.method {
            Method::GET => Ok(json(
                200,
                &state.app.list_host_credentials(&ctx, &req.query).await?,
            )),
            Method::POST => Ok(json(
                201,
                &state
                    .app
                    .create_host_credential(&ctx, &parse_body(req)?)
                    .await?,
            )),
            _ => Err(not_allowed()),
        },
        ["neutrino", "host-credentials", id] => match req.method {
            Method::GET => Ok(json(200, &state.app.show_host_credential(&ctx, id).await?)),
            Method::DELETE => {
                state.app.delete_host_credential(&ctx, id).await?;
                Ok(empty(204))
            }
            _ => Err(not_allowed()),
        },
        ["neutrino", "port-pools"] => match req.method {
            Method::GET => Ok(json(
                200,
                &state.app.list_port_pools(&ctx, &req.query).await?,
            )),
            Method::POST => Ok(json(
                201,
                &state.app.create_port_pool(&ctx, &parse_body(req)?).await?,
            )),
            _ => Err(not_allowed()),
        },
        ["neutrino", "port-pools", "take"] => match req.method {
            Method::POST => Ok(json(
                201,
                &state.app.take_pooled_port(&ctx, &parse_body(req)?).await?,
            )),
            _ => Err(not_allowed()),
        },
        ["neutrino", "port-pools", id] => match req.method {
            Method::GET => Ok(json(200, &state.app.show_port_pool(&ctx, id).await?)),
            Method::PUT => Ok(json(
                200,
                &state
                    .app
                    .update_port_pool(&ctx, id, &parse_body(req)?)
                    .await?,
            )),
            Method::DELETE => {
                state.app.delete_port_pool(&ctx, id).await?;
                Ok(empty(204))
            }
            _ => Err(not_allowed()),
        },
        ["extensions"] => only_get(req, || Ok(json(200, &extensions::list()))),
        ["extensions", alias] => only_get(req, || {
            extensions::get(alias)
                .map(|e| json(200, &e))
                .ok_or_else(|| {
                    ApiError::new(
                        404,
                        "HTTPNotFound",
                        format!("Extension with alias {alias} does not exist"),
                    )
                })
        }),
        ["quotas", ..] => quotas(state, req, &ctx, &rest[1..]).await,
        ["network-ip-availabilities"] if req.method == Method::GET => Ok(json(
            200,
            &state.app.ip_availabilities(&ctx, &req.query).await?,
        )),
        ["network-ip-availabilities", id] if req.method == Method::GET => {
            Ok(json(200, &state.app.ip_availability(&ctx, id).await?))
        }
        ["floatingip-pools"] if req.method == Method::GET => {
            let pools = state.app.floatingip_pools(&ctx, &req.query).await?;
            Ok(json(200, &json!({ "floatingip_pools": pools })))
        }
        ["floatingip-pools"] => Err(not_allowed()),
        ["agents"] if req.method == Method::GET => {
            let page = state.app.list_agents(&ctx, &req.query).await?;
            let items: Vec<Value> = page.items.into_iter().map(Value::Object).collect();
            Ok(json(200, &json!({"agents": items})))
        }
        ["agents"] => Err(not_allowed()),
        ["agents", id] => match req.method {
            Method::GET => Ok(json(200, &state.app.show_agent(&ctx, id).await?)),
            Method::PUT => {
                let body = parse_body(req)?;
                Ok(json(200, &state.app.update_agent(&ctx, id, body).await?))
            }
            Method::DELETE => {
                state.app.delete_agent(&ctx, id).await?;
                Ok(empty(204))
            }
            _ => Err(not_allowed()),
        },
        ["agents", id, "l3-routers"] => match req.method {
            Method::GET => Ok(json(200, &state.app.l3_agent_routers(&ctx, id).await?)),
            Method::POST => {
                let body = parse_body(req)?;
                let out = state.app.add_router_to_l3_agent(&ctx, id, body).await?;
                Ok(json(201, &out))
            }
            _ => Err(not_allowed()),
        },
        ["agents", id, "l3-routers", router] => match req.method {
            Method::DELETE => {
                state
                    .app
                    .remove_router_from_l3_agent(&ctx, id, router)
                    .await?;
                Ok(empty(204))
            }
            _ => Err(not_allowed()),
        },
        ["agents", id, "bgp-drinstances"] => match req.method {
            Method::GET => Ok(json(200, &state.app.dragent_speakers(&ctx, id).await?)),
            Method::POST => {
                let body = parse_body(req)?;
                let out = state.app.add_speaker_to_dragent(&ctx, id, body).await?;
                Ok(json(201, &out))
            }
            _ => Err(not_allowed()),
        },
        ["agents", id, "bgp-drinstances", speaker] => match req.method {
            Method::DELETE => {
                state
                    .app
                    .remove_speaker_from_dragent(&ctx, id, speaker)
                    .await?;
                Ok(empty(204))
            }
            _ => Err(not_allowed()),
        },
        ["bgp-speakers", id, "bgp-dragents"] => match req.method {
            Method::GET => Ok(json(200, &state.app.speaker_dragents(&ctx, id).await?)),
            _ => Err(not_allowed()),
        },
        ["agents", id, "dhcp-networks"] => match req.method {
            Method::GET => Ok(json(200, &state.app.dhcp_agent_networks(&ctx, id).await?)),
            Method::POST => {
                let body = parse_body(req)?;
                let out = state.app.add_network_to_dhcp_agent(&ctx, id, body).await?;
                Ok(json(201, &out))
            }
            _ => Err(not_allowed()),
        },
        ["agents", id, "dhcp-networks", network] => match req.method {
            Method::DELETE => {
                state
                    .app
                    .remove_network_from_dhcp_agent(&ctx, id, network)
                    .await?;
                Ok(empty(204))
            }
            _ => Err(not_allowed()),
        },
        ["networks", id, "dhcp-agents"] => match req.method {
            Method::GET => Ok(json(
                200,
                &state.app.dhcp_agents_hosting_network(&ctx, id).await?,
            )),
            _ => Err(not_allowed()),
        },
        ["routers", id, "l3-agents"] => match req.method {
            Method::GET => Ok(json(
                200,
                &state.app.l3_agents_hosting_router(&ctx, id).await?,
            )),
            _ => Err(not_allowed()),
        },
        ["availability_zones"] if req.method == Method::GET => {
            let items = state.app.availability_zones(&ctx, &req.query).await?;
            Ok(json(200, &json!({ "availability_zones": items })))
        }
        ["availability_zones"] => Err(not_allowed()),
        ["service-providers"] if req.method == Method::GET => {
            let items = state.app.service_providers(&ctx, &req.query)?;
            Ok(json(200, &json!({ "service_providers": items })))
        }
        ["service-providers"] => Err(not_allowed()),
        ["flavors", id, "service_profiles"] => match req.method {
            Method::POST => {
                let body = parse_body(req)?;
                Ok(json(
                    201,
                    &state.app.bind_flavor_profile(&ctx, id, body).await?,
                ))
            }
            _ => Err(not_allowed()),
        },
        ["flavors", id, "service_profiles", profile] => match req.method {
            Method::GET => Ok(json(
                200,
                &state.app.flavor_profile(&ctx, id, profile).await?,
            )),
            Method::DELETE => {
                state.app.unbind_flavor_profile(&ctx, id, profile).await?;
                Ok(empty(204))
            }
            _ => Err(not_allowed()),
        },
        ["flavors", id, "next_providers"] if req.method == Method::GET => {
            Ok(json(200, &state.app.flavor_next_providers(&ctx, id).await?))
        }
        ["log", "loggable-resources"] => match req.method {
            Method::GET => Ok(json(200, &state.app.loggable_resources(&ctx).await?)),
            _ => Err(not_allowed()),
        },
        ["auto-allocated-topology", project] => match req.method {
            Method::GET => Ok(json(
                200,
                &state
                    .app
                    .auto_allocated_topology(&ctx, project, &fields(req))
                    .await?,
            )),
            Method::DELETE => {
                state
                    .app
                    .delete_auto_allocated_topology(&ctx, project)
                    .await?;
                Ok(empty(204))
            }
            _ => Err(not_allowed()),
        },
        ["qos", "rule-types"] => only_get(req, || Ok(json(200, &state.app.qos_rule_types(&ctx)))),
        ["qos", "rule-types", name] => match req.method {
            Method::GET => Ok(json(200, &state.app.qos_rule_type(&ctx, name)?)),
            _ => Err(not_allowed()),
        },
        [first, more @ ..] => {
            // Some extensions' collections live one level down (`/v2.0/sfc/port_chains/...`,
            // `/v2.0/qos/policies/...`): a two-segment path wins when a collection has it.
            let (path, tail) = match more {
                [coll, tail @ ..] if Collection::by_path(&format!("{first}/{coll}")).is_some() => {
                    (format!("{first}/{coll}"), tail)
                }
                // Neutron's tag extension names QoS policies by their bare collection name.
                [_, "tags", ..] if *first == "policies" => ("qos/policies".to_string(), more),
                _ => (first.to_string(), more),
            };
            let Some(collection) = Collection::by_path(&path) else {
                return Err(ApiError::no_such_url());
            };
            // A nested collection: `/{parent}/{parent_id}/{child}[/{id}]`.
            if let [parent, child, rest @ ..] = tail {
                if let Some(nested) = Collection::child(&path, child) {
                    let at = Nested {
                        id: parent,
                        path: format!("{path}/{parent}/{child}"),
                    };
                    return match rest {
                        [] => collection_request(state, req, &ctx, nested, Some(&at)).await,
                        [id] => member_request(state, req, &ctx, nested, Some(parent), id).await,
                        _ => Err(ApiError::no_such_url()),
                    };
                }
            }
            // An alias collection (`qos/alias_*_rules`) has members only.
            if collection.key != collection.resource && tail.len() != 1 {
                return Err(ApiError::no_such_url());
            }
            match tail {
                [] => collection_request(state, req, &ctx, collection, None).await,
                [id] => member_request(state, req, &ctx, collection, None, id).await,
                [id, "tags"] if collection.taggable => {
                    tags(state, req, &ctx, collection, id, None).await
                }
                [id, "tags", tag] if collection.taggable => {
                    tags(state, req, &ctx, collection, id, Some(tag)).await
                }
                [id, action] if req.method == Method::PUT => {
                    let body = parse_body(req)?;
                    let out = state.app.action(&ctx, collection, id, action, body).await?;
                    Ok(json(200, &out))
                }
                [id, action] if req.method == Method::GET => {
                    let out = state.app.get_action(&ctx, collection, id, action).await?;
                    Ok(json(200, &out))
                }
                _ => Err(ApiError::no_such_url()),
            }
        }
        [] => Err(ApiError::no_such_url()),
    }
}

/// `?timeout=SECS` of a wait (seconds, fractions allowed, at most
/// [`neutrino_app::barrier::MAX_WAIT_SECS`]; absent: answer at once).
fn wait_timeout(req: &Request, max_secs: f64) -> ApiResult<std::time::Duration> {
    let Some((_, raw)) = req.query.iter().find(|(k, _)| k == "timeout") else {
        return Ok(std::time::Duration::ZERO);
    };
    raw.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && (0.0..=max_secs).contains(s))
        .map(std::time::Duration::from_secs_f64)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "Invalid timeout {raw:?}: seconds from 0 to {max_secs}"
            ))
        })
}

/// `GET /v2.0/neutrino/topology[?timeout=S]`: the caller's topology view with its `ETag`.
/// With `If-None-Match` naming the view the caller has, the answer waits up to `timeout`
/// seconds for a change the caller can see: the new view, or `304 Not Modified`.
async fn topology(state: &ApiState, req: &Request, ctx: &Context) -> ApiResult<Response> {
    let wait = wait_timeout(req, neutrino_app::topology::MAX_WAIT_SECS)?;
    let seen = req.header("if-none-match").map(str::trim);
    let view = match seen {
        Some(seen) => state.app.topology_change(ctx, seen, wait).await?,
        None => Some(state.app.topology(ctx).await?),
    };
    let (mut response, etag) = match view {
        Some(view) => (json(200, &view.document), view.etag),
        None => (empty(304), seen.unwrap_or_default().to_string()),
    };
    let headers = response.headers_mut();
    if let Ok(value) = axum::http::HeaderValue::from_str(&etag) {
        headers.insert(axum::http::header::ETAG, value);
    }
    headers.insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

fn only_get(req: &Request, f: impl FnOnce() -> ApiResult<Response>) -> ApiResult<Response> {
    if req.method == Method::GET {
        f()
    } else {
        Err(not_allowed())
    }
}

pub(crate) fn parse_body(req: &Request) -> ApiResult<Value> {
    if req.body.is_empty() {
        return Err(ApiError::bad_request("Resource body required"));
    }
    serde_json::from_slice(&req.body).map_err(|_| {
        ApiError::bad_request("Malformed request body: The server could not comply with the request since it is either malformed or otherwise incorrect.")
    })
}

/// `If-Match: revision_number=N`; other entity tags are ignored.
fn if_match(req: &Request) -> ApiResult<Option<i64>> {
    let Some(header) = req.header("if-match") else {
        return Ok(None);
    };
    let mut found = None;
    for tag in header.split(',').map(str::trim) {
        if let Some(n) = tag.strip_prefix("revision_number=") {
            if found.is_some() {
                return Err(ApiError::bad_request(
                    "Multiple revision_number etags are not supported.",
                ));
            }
            found = Some(n.parse::<i64>().map_err(|_| {
                ApiError::bad_request(
                    "Revision number etag must be in the format of revision_number=<int>",
                )
            })?);
        }
    }
    Ok(found)
}

fn fields(req: &Request) -> Vec<String> {
    req.query
        .iter()
        .filter(|(k, _)| k == "fields")
        .flat_map(|(_, v)| v.split(',').map(str::to_string))
        .filter(|f| !f.is_empty())
        .collect()
}

/// A pagination link: the same query with a new marker (none on an empty page).
fn link(req: &Request, path: &str, marker: Option<&str>, reverse: bool) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in &req.query {
        if k != "marker" && k != "page_reverse" {
            q.append_pair(k, v);
        }
    }
    if let Some(marker) = marker {
        q.append_pair("marker", marker);
    }
    if reverse {
        q.append_pair("page_reverse", "True");
    }
    format!("{}/v2.0/{path}?{}", req.base, q.finish())
}

/// The parent member of a nested collection's request.
struct Nested<'a> {
    /// The parent's id.
    id: &'a str,
    /// The collection's URL path below `/v2.0/` (for pagination links).
    path: String,
}

async fn collection_request(
    state: &ApiState,
    req: &Request,
    ctx: &Context,
    coll: &'static Collection,
    nested: Option<&Nested<'_>>,
) -> ApiResult<Response> {
    let parent = nested.map(|n| n.id);
    let path = nested.map_or(coll.path, |n| n.path.as_str());
    match req.method {
        Method::GET => {
            let page = state.app.list_in(ctx, coll, parent, &req.query).await?;
            let mut out = Map::new();
            let mut links = Vec::new();
            let id_of = |d: Option<&Map<String, Value>>| {
                d.and_then(|d| d.get("id"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            if page.next {
                let last = id_of(page.items.last());
                let href = link(req, path, last.as_deref(), false);
                links.push(json!({"rel": "next", "href": href}));
            }
            if page.previous {
                let first = id_of(page.items.first());
                let href = link(req, path, first.as_deref(), true);
                links.push(json!({"rel": "previous", "href": href}));
            }
            let plural = coll.plural();
            let items = page.items.into_iter().map(Value::Object).collect();
            out.insert(plural.clone(), Value::Array(items));
            if !links.is_empty() {
                out.insert(format!("{plural}_links"), Value::Array(links));
            }
            Ok(json(200, &Value::Object(out)))
        }
        Method::POST => {
            let body = parse_body(req)?;
            let obj = body
                .as_object()
                .ok_or_else(|| ApiError::bad_request("Resource body required"))?;
            let single = coll.key;
            let plural = coll.plural();
            if let Some(item) = obj.get(single) {
                let item = item.as_object().cloned().ok_or_else(|| {
                    ApiError::bad_request(format!("Unable to find '{single}' in request body"))
                })?;
                let mut out = state.app.create_in(ctx, coll, parent, vec![item]).await?;
                let created = out.pop().ok_or_else(ApiError::internal)?;
                return Ok(json(201, &json!({ single: created })));
            }
            if let Some(items) = obj.get(&plural) {
                if !coll.bulk {
                    return Err(ApiError::bad_request("Bulk operation not supported"));
                }
                let list = items
                    .as_array()
                    .ok_or_else(|| ApiError::bad_request("Resources required"))?;
                if list.is_empty() {
                    return Err(ApiError::bad_request("Resources required"));
                }
                let mut bodies = Vec::with_capacity(list.len());
                for item in list {
                    let item = item.get(single).unwrap_or(item);
                    bodies.push(item.as_object().cloned().ok_or_else(|| {
                        ApiError::bad_request(format!("Unable to find '{single}' in request body"))
                    })?);
                }
                let created = state.app.create_in(ctx, coll, parent, bodies).await?;
                return Ok(json(201, &json!({ plural: created })));
            }
            if obj.is_empty() {
                return Err(ApiError::bad_request("Resource body required"));
            }
            Err(ApiError::bad_request(format!(
                "Unable to find '{single}' in request body"
            )))
        }
        _ => Err(not_allowed()),
    }
}

async fn member_request(
    state: &ApiState,
    req: &Request,
    ctx: &Context,
    coll: &'static Collection,
    parent: Option<&str>,
    id: &str,
) -> ApiResult<Response> {
    let single = coll.key;
    match req.method {
        Method::GET => {
            let doc = state
                .app
                .show_in(ctx, coll, parent, id, &fields(req))
                .await?;
            Ok(json(200, &json!({ single: doc })))
        }
        Method::PUT => {
            let body = parse_body(req)?;
            let item = body
                .get(single)
                .and_then(Value::as_object)
                .cloned()
                .ok_or_else(|| {
                    ApiError::bad_request(format!("Unable to find '{single}' in request body"))
                })?;
            let doc = state
                .app
                .update_in(ctx, coll, parent, id, item, if_match(req)?)
                .await?;
            Ok(json(200, &json!({ single: doc })))
        }
        Method::DELETE => {
            state
                .app
                .delete_in(ctx, coll, parent, id, if_match(req)?)
                .await?;
            Ok(empty(204))
        }
        _ => Err(not_allowed()),
    }
}

async fn tags(
    state: &ApiState,
    req: &Request,
    ctx: &Context,
    coll: &'static Collection,
    id: &str,
    tag: Option<&str>,
) -> ApiResult<Response> {
    let app = &state.app;
    let body_tags = || -> ApiResult<Vec<String>> {
        let body = parse_body(req)?;
        let tags = body.get("tags").ok_or_else(|| {
            ApiError::bad_request("Invalid input for tags. Reason: tags is required.")
        })?;
        neutrino_app::validate_tags(tags)
    };
    match (req.method.clone(), tag) {
        (Method::GET, None) => Ok(json(200, &json!({"tags": app.tags(ctx, coll, id).await?}))),
        (Method::GET, Some(tag)) => {
            if app.tags(ctx, coll, id).await?.iter().any(|t| t == tag) {
                Ok(empty(204))
            } else {
                Err(ApiError::new(
                    404,
                    "TagNotFound",
                    format!(
                        "Tag {tag} could not be found for {single} {id}.",
                        single = coll.resource
                    ),
                ))
            }
        }
        (Method::PUT, Some(tag)) => {
            let tag = tag.to_string();
            app.edit_tags(ctx, coll, id, |mut t| {
                if !t.contains(&tag) {
                    t.push(tag.clone());
                }
                Ok(t)
            })
            .await?;
            Ok(empty(201))
        }
        (Method::PUT, None) => {
            let new = body_tags()?;
            let out = app.edit_tags(ctx, coll, id, |_| Ok(new)).await?;
            Ok(json(200, &json!({"tags": out})))
        }
        (Method::POST, None) => {
            let new = body_tags()?;
            let out = app
                .edit_tags(ctx, coll, id, |mut t| {
                    for n in new {
                        if !t.contains(&n) {
                            t.push(n);
                        }
                    }
                    Ok(t)
                })
                .await?;
            Ok(json(200, &json!({"tags": out})))
        }
        (Method::DELETE, None) => {
            app.edit_tags(ctx, coll, id, |_| Ok(Vec::new())).await?;
            Ok(empty(204))
        }
        (Method::DELETE, Some(tag)) => {
            let tag = tag.to_string();
            let resource = coll.resource;
            let id_owned = id.to_string();
            app.edit_tags(ctx, coll, id, |mut t| {
                let before = t.len();
                t.retain(|x| *x != tag);
                if t.len() == before {
                    return Err(ApiError::new(
                        404,
                        "TagNotFound",
                        format!("Tag {tag} could not be found for {resource} {id_owned}."),
                    ));
                }
                Ok(t)
            })
            .await?;
            Ok(empty(204))
        }
        _ => Err(not_allowed()),
    }
}

async fn quotas(
    state: &ApiState,
    req: &Request,
    ctx: &Context,
    rest: &[&str],
) -> ApiResult<Response> {
    let app = &state.app;
    match (req.method.clone(), rest) {
        (Method::GET, []) => Ok(json(200, &app.quota_list(ctx).await?)),
        (Method::POST, []) => Err(ApiError::new(501, "NotImplementedError", "Not implemented")),
        (Method::GET, ["project" | "tenant"]) => {
            let key = rest[0];
            Ok(json(
                200,
                &json!({ key: {format!("{key}_id"): ctx.project_id} }),
            ))
        }
        (Method::GET, [project]) => Ok(json(200, &app.quota_show(ctx, project).await?)),
        (Method::GET, [project, "default"]) => {
            Ok(json(200, &app.quota_defaults(ctx, project).await?))
        }
        (Method::GET, [project, "details"]) => {
            Ok(json(200, &app.quota_details(ctx, project).await?))
        }
        (Method::PUT, [project]) => Ok(json(
            200,
            &app.quota_update(ctx, project, &parse_body(req)?).await?,
        )),
        (Method::DELETE, [project]) => {
            app.quota_delete(ctx, project).await?;
            Ok(empty(204))
        }
        _ => Err(ApiError::no_such_url()),
    }
}
