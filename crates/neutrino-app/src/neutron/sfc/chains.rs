//! Port chains (ordered hops plus the classifiers that enter them) and service graphs
//! (chains linked at branching points).

use std::collections::{BTreeSet, HashMap};

use neutrino_store::{Record, Tx};
use neutrino_types::sfc::{
    chain_parameters, graph_edges, has_loop, uuid_list, Match, MAX_CHAIN_ID,
};
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use super::{allocate, by_id, chain_index, ids, number_key, sees, sha256_hex, text, visible, Doc};
use super::{CHAIN_GRAPH, CHAIN_ID, FC_CHAIN, PPG_LIST, PPG_USE};
use crate::{db, App, Context};

/// `port_pair_groups` of a request: a non-empty list of unique UUIDs.
fn hop_list(v: &Value) -> ApiResult<Vec<String>> {
    let empty = match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        _ => false,
    };
    if empty {
        return Err(ApiError::bad(
            "PortPairGroupNotSpecified",
            "Port Pair Group is not specified in Port Chain.",
        ));
    }
    uuid_list("port_pair_groups", v)
}

fn chain_correlation(chain: &Record) -> Value {
    chain.body["chain_parameters"]["correlation"].clone()
}

/// The port pairs of the groups `groups`, by group id.
async fn group_pairs(tx: &mut Tx, groups: &[Record]) -> ApiResult<HashMap<String, Vec<Record>>> {
    let all: Vec<String> = groups
        .iter()
        .flat_map(|g| ids(&g.body, "port_pairs"))
        .collect();
    let mut pairs = by_id(tx, "port_pair", &all).await?;
    Ok(groups
        .iter()
        .map(|g| {
            let members = ids(&g.body, "port_pairs")
                .iter()
                .filter_map(|p| pairs.remove(p))
                .collect();
            (g.id.clone(), members)
        })
        .collect())
}

impl App {
    pub(super) async fn create_port_chain(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<()> {
        let hops = hop_list(body.get("port_pair_groups").unwrap_or(&Value::Null))?;
        let fcs = uuid_list(
            "flow_classifiers",
            body.get("flow_classifiers").unwrap_or(&Value::Null),
        )?;
        let params = chain_parameters(body.get("chain_parameters").unwrap_or(&Value::Null))?;
        let doc = Value::Object(body.clone());
        let (id, project) = (text(&doc, "id"), text(&doc, "project_id"));
        let groups = self.check_hops(tx, ctx, &id, &project, &hops).await?;
        // Every pair must speak the chain's correlation or none (create only, as upstream).
        let members = group_pairs(tx, &groups).await?;
        for g in &groups {
            let wrong = members[&g.id].iter().any(|pp| {
                let c = &pp.body["service_function_parameters"]["correlation"];
                !c.is_null() && *c != params["correlation"]
            });
            if wrong {
                return Err(ApiError::bad(
                    "PortChainInconsistentCorrelations",
                    format!(
                        "Port Chain attempted creation included a Port Pair Group ({}) with a \
                         different protocol used as correlation type.",
                        g.id
                    ),
                ));
            }
        }
        self.check_classifiers(tx, ctx, &id, &fcs).await?;
        let wanted = doc.get("chain_id").and_then(Value::as_i64).unwrap_or(0);
        let chain_id = if wanted == 0 {
            allocate(tx, CHAIN_ID, MAX_CHAIN_ID - 1, &id)
                .await?
                .ok_or_else(|| {
                    ApiError::bad(
                        "PortChainUnavailableChainId",
                        format!("Port Chain {id} no available chain id."),
                    )
                })?
        } else {
            if !tx
                .claim(CHAIN_ID, &number_key(wanted), &id)
                .await
                .map_err(db)?
            {
                let other = tx
                    .claim_owner(CHAIN_ID, &number_key(wanted))
                    .await
                    .map_err(db)?
                    .unwrap_or_default();
                return Err(ApiError::bad(
                    "PortChainChainIdInConflict",
                    format!("Chain id {wanted} conflicts with Chain id in port chain {other}."),
                ));
            }
            wanted
        };
        body.insert("chain_id".into(), json!(chain_id));
        body.insert("port_pair_groups".into(), json!(hops));
        body.insert("flow_classifiers".into(), json!(fcs));
        body.insert("chain_parameters".into(), params);
        Ok(())
    }

    pub(super) async fn update_port_chain(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        rec: &Record,
        changes: &mut Doc,
    ) -> ApiResult<()> {
        let fcs = changes.get("flow_classifiers").cloned();
        let hops = changes.get("port_pair_groups").cloned();
        if fcs.is_none() && hops.is_none() {
            return Ok(());
        }
        if tx
            .claim_owner(CHAIN_GRAPH, &rec.id)
            .await
            .map_err(db)?
            .is_some()
        {
            return Err(ApiError::conflict(
                "ServiceGraphPortChainInUse",
                format!("Port Chain {} in use.", rec.id),
            ));
        }
        if let Some(v) = fcs {
            let fcs = uuid_list("flow_classifiers", &v)?;
            tx.release_owned(FC_CHAIN, &rec.id).await.map_err(db)?;
            tx.release_owned("sfc-chain-src:", &rec.id)
                .await
                .map_err(db)?;
            self.check_classifiers(tx, ctx, &rec.id, &fcs).await?;
            changes.insert("flow_classifiers".into(), json!(fcs));
        }
        if let Some(v) = hops {
            let hops = hop_list(&v)?;
            tx.release_owned(PPG_USE, &rec.id).await.map_err(db)?;
            tx.release_owned(PPG_LIST, &rec.id).await.map_err(db)?;
            self.check_hops(tx, ctx, &rec.id, &rec.project_id, &hops)
                .await?;
            changes.insert("port_pair_groups".into(), json!(hops));
        }
        Ok(())
    }

    /// Loads and claims the hops of chain `chain` (owned by `project`): visible groups, no
    /// two tap groups in a row, no other visible chain with the same ordered list.
    async fn check_hops(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        chain: &str,
        project: &str,
        hops: &[String],
    ) -> ApiResult<Vec<Record>> {
        let groups = visible(tx, ctx, "port_pair_group", hops).await?;
        let taps: Vec<bool> = groups
            .iter()
            .map(|g| g.body["tap_enabled"] == true)
            .collect();
        if taps.windows(2).any(|w| w[0] && w[1]) {
            return Err(ApiError::bad(
                "ConsecutiveTapPPGNotSupported",
                "Consecutive Tap PPG in port-chain is not supported now.",
            ));
        }
        // Chains that could hold this list: the owner's, and (for an admin, who sees every
        // chain) those of the groups' owners.
        let list = sha256_hex(&hops.join(","));
        let mut projects = BTreeSet::from([project.to_string()]);
        if ctx.is_admin() {
            projects.extend(groups.iter().map(|g| g.project_id.clone()));
        } else {
            projects.insert(ctx.project_id.clone());
        }
        for p in &projects {
            let key = format!("{p}|{list}");
            if let Some(other) = tx.claim_owner(PPG_LIST, &key).await.map_err(db)? {
                if other != chain {
                    let shown: Vec<String> = hops.iter().map(|h| format!("'{h}'")).collect();
                    return Err(ApiError::conflict(
                        "InvalidPortPairGroups",
                        format!(
                            "Port Pair Group(s) [{}] in use by Port Chain {other}.",
                            shown.join(", ")
                        ),
                    ));
                }
            }
        }
        let key = format!("{project}|{list}");
        if !tx.claim(PPG_LIST, &key, chain).await.map_err(db)? {
            return Err(ApiError::conflict(
                "InvalidPortPairGroups",
                "Port Pair Group(s) in use by another Port Chain.",
            ));
        }
        for g in hops {
            tx.claim(PPG_USE, &format!("{g}/{chain}"), chain)
                .await
                .map_err(db)?;
        }
        Ok(groups)
    }

    /// Loads and claims the classifiers of chain `chain`: visible, in no other chain, and
    /// not overlapping a classifier of another chain the caller sees.
    async fn check_classifiers(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        chain: &str,
        fcs: &[String],
    ) -> ApiResult<()> {
        let classifiers = visible(tx, ctx, "flow_classifier", fcs).await?;
        for fc in &classifiers {
            if !tx.claim(FC_CHAIN, &fc.id, chain).await.map_err(db)? {
                return Err(ApiError::conflict(
                    "FlowClassifierInUse",
                    format!("Flow Classifier {} in use.", fc.id),
                ));
            }
        }
        // Candidates from the source-prefix index of attached classifiers.
        let mut candidates: Vec<(usize, String, String)> = Vec::new();
        let matches: Vec<Match> = classifiers.iter().map(|fc| Match::of(&fc.body)).collect();
        for (i, m) in matches.iter().enumerate() {
            let scope = chain_index(&m.ethertype);
            for (key, owner) in tx
                .claims_in_ranges(&scope, &m.index_ranges())
                .await
                .map_err(db)?
            {
                if owner != chain {
                    let fc = key.rsplit('/').next().unwrap_or_default().to_string();
                    candidates.push((i, fc, owner));
                }
            }
        }
        if !candidates.is_empty() {
            let fc_ids: Vec<String> = candidates.iter().map(|c| c.1.clone()).collect();
            let chain_ids: Vec<String> = candidates.iter().map(|c| c.2.clone()).collect();
            let other_fcs = by_id(tx, "flow_classifier", &fc_ids).await?;
            let chains = by_id(tx, "port_chain", &chain_ids).await?;
            for (i, fc, owner) in &candidates {
                let (Some(other), Some(pc)) = (other_fcs.get(fc), chains.get(owner)) else {
                    continue;
                };
                if sees(ctx, pc) && matches[*i].basic_overlap(&Match::of(&other.body)) {
                    return Err(ApiError::bad(
                        "PortChainFlowClassifierInConflict",
                        format!(
                            "Flow Classifier {} conflicts with Flow Classifier {fc} in port \
                             chain {owner}.",
                            classifiers[*i].id
                        ),
                    ));
                }
            }
        }
        for (fc, m) in classifiers.iter().zip(&matches) {
            tx.claim(&chain_index(&m.ethertype), &m.index_key(&fc.id), chain)
                .await
                .map_err(db)?;
        }
        Ok(())
    }

    pub(super) async fn create_service_graph(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<()> {
        let edges = graph_edges(body.get("port_chains").unwrap_or(&Value::Null))?;
        let id = text(&Value::Object(body.clone()), "id");
        let all: BTreeSet<String> = edges
            .iter()
            .flat_map(|(s, d)| std::iter::once(s.clone()).chain(d.iter().cloned()))
            .collect();
        for chain in &all {
            if !tx.claim(CHAIN_GRAPH, chain, &id).await.map_err(db)? {
                return Err(ApiError::conflict(
                    "ServiceGraphInvalidPortChains",
                    format!(
                        "Some of the Port Chain(s): {}, are already in use by a Service Graph.",
                        json!(edges)
                    ),
                ));
            }
        }
        let all: Vec<String> = all.into_iter().collect();
        let chains: HashMap<String, Record> = visible(tx, ctx, "port_chain", &all)
            .await?
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
        // The hop at each end of a link: last of a source, first of a destination.
        let mut ends: Vec<String> = Vec::new();
        for (src, dsts) in &edges {
            ends.extend(ids(&chains[src].body, "port_pair_groups").last().cloned());
            for d in dsts {
                ends.extend(ids(&chains[d].body, "port_pair_groups").first().cloned());
            }
        }
        let groups: Vec<Record> = by_id(tx, "port_pair_group", &ends)
            .await?
            .into_values()
            .collect();
        let members = group_pairs(tx, &groups).await?;
        let branching_ok = |chain: &Record, last: bool| {
            let hops = ids(&chain.body, "port_pair_groups");
            let hop = if last { hops.last() } else { hops.first() };
            let corr = chain_correlation(chain);
            hop.and_then(|h| members.get(h)).is_none_or(|pps| {
                pps.iter()
                    .all(|pp| pp.body["service_function_parameters"]["correlation"] == corr)
            })
        };
        let impossible = || {
            ApiError::bad(
                "ServiceGraphImpossibleBranching",
                "Service Graphs require source (branching) and destination port pair groups \
                 (their PPs) to have correlation enabled.",
            )
        };
        let inconsistent = || {
            ApiError::bad(
                "ServiceGraphInconsistentEncapsulation",
                "Service Graph may only connect port-chains sharing the same correlation.",
            )
        };
        let mut encapsulation: Option<Value> = None;
        for (src, dsts) in &edges {
            let src_pc = &chains[src];
            if !branching_ok(src_pc, true) {
                return Err(impossible());
            }
            let corr = chain_correlation(src_pc);
            if *encapsulation.get_or_insert(corr.clone()) != corr {
                return Err(inconsistent());
            }
            let mut seen: Vec<&String> = Vec::new();
            let mut fcs: Vec<String> = Vec::new();
            for d in dsts {
                if seen.contains(&d) {
                    return Err(ApiError::bad(
                        "ServiceGraphPortChainInConflict",
                        format!(
                            "Port Chain {d} is duplicated on one of the branching points being \
                             created."
                        ),
                    ));
                }
                seen.push(d);
                let dst_pc = &chains[d];
                if !branching_ok(dst_pc, false) {
                    return Err(impossible());
                }
                if encapsulation.as_ref() != Some(&chain_correlation(dst_pc)) {
                    return Err(inconsistent());
                }
                fcs.extend(ids(&dst_pc.body, "flow_classifiers"));
            }
            let found = by_id(tx, "flow_classifier", &fcs).await?;
            let list: Vec<&Record> = fcs.iter().filter_map(|f| found.get(f)).collect();
            for (i, a) in list.iter().enumerate() {
                for b in &list[i + 1..] {
                    if Match::of(&a.body).basic_overlap(&Match::of(&b.body)) {
                        return Err(ApiError::bad(
                            "ServiceGraphFlowClassifierInConflict",
                            format!(
                                "Flow Classifier {} conflicts with Flow Classifier {} on one of \
                                 the branching points being created.",
                                a.id, b.id
                            ),
                        ));
                    }
                }
            }
        }
        if has_loop(&edges) {
            return Err(ApiError::bad(
                "ServiceGraphLoopDetected",
                "Service Graph defined contains at least one port chain loop.",
            ));
        }
        body.insert("port_chains".into(), json!(edges));
        Ok(())
    }
}
