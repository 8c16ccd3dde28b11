//! Server-drawn SVG: a task's delegation tree, and live authority over time.

use std::collections::HashMap;
use std::fmt::Write as _;

use mandate_proto::v1 as pb;

use super::pages::esc;

const NODE_W: u32 = 230;
const NODE_H: u32 = 54;
const COL: u32 = 270;
const ROW: u32 = 70;

/// The tree, roots on the left, children to the right, revoked and expired links drawn
/// apart (dashed, coloured by state). Each node links to its row in the table below.
pub(crate) fn tree(links: &[pb::LinkNode]) -> String {
    // Rows in depth-first order, so a subtree stays together.
    let ids: std::collections::HashSet<&str> = links.iter().map(|l| l.link_id.as_str()).collect();
    let mut children: HashMap<&str, Vec<&pb::LinkNode>> = HashMap::new();
    let mut roots = Vec::new();
    for l in links {
        if l.parent_link_id.is_empty() || !ids.contains(l.parent_link_id.as_str()) {
            roots.push(l);
        } else {
            children
                .entry(l.parent_link_id.as_str())
                .or_default()
                .push(l);
        }
    }
    let mut order: Vec<(&pb::LinkNode, u32)> = Vec::new();
    let mut stack: Vec<(&pb::LinkNode, u32)> = roots.iter().rev().map(|l| (*l, 0)).collect();
    // Each id drawn once, whatever a (broken) answer says about parents: no cycle loops.
    let mut drawn: std::collections::HashSet<&str> = std::collections::HashSet::new();
    while let Some((l, depth)) = stack.pop() {
        if !drawn.insert(l.link_id.as_str()) {
            continue;
        }
        order.push((l, depth));
        if let Some(c) = children.get(l.link_id.as_str()) {
            stack.extend(c.iter().rev().map(|c| (*c, depth + 1)));
        }
    }
    let at: HashMap<&str, (u32, u32)> = order
        .iter()
        .enumerate()
        .map(|(row, (l, depth))| {
            let row = u32::try_from(row).unwrap_or(u32::MAX / ROW);
            (l.link_id.as_str(), (10 + depth * COL, 10 + row * ROW))
        })
        .collect();
    let depth = order.iter().map(|(_, d)| *d).max().unwrap_or(0);
    let width = 20 + (depth + 1) * COL;
    let height = 20 + u32::try_from(order.len()).unwrap_or(0) * ROW;
    let mut s = format!(
        r#"<svg class="tree" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="delegation tree">"#
    );
    for (l, _) in &order {
        if let (Some((px, py)), Some((x, y))) = (
            at.get(l.parent_link_id.as_str()),
            at.get(l.link_id.as_str()),
        ) {
            let _ = write!(
                s,
                r#"<path class="edge" d="M{} {} H{} V{} H{}"/>"#,
                px + NODE_W,
                py + NODE_H / 2,
                px + NODE_W + 20,
                y + NODE_H / 2,
                x
            );
        }
    }
    for (l, _) in &order {
        let Some((x, y)) = at.get(l.link_id.as_str()) else {
            continue;
        };
        let state = state_name(l.state);
        let short = l.link_id.get(..8).unwrap_or(&l.link_id);
        let holder = l
            .holder_agent_id
            .rsplit('/')
            .next()
            .unwrap_or(&l.holder_agent_id);
        let _ = write!(
            s,
            r##"<a href="#link-{id}"><g class="node {state}" data-link="{id}"><rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6"/><text x="{tx}" y="{ty1}">{holder}</text><text class="small" x="{tx}" y="{ty2}">{short} · {state}</text></g></a>"##,
            id = esc(&l.link_id),
            tx = x + 10,
            ty1 = y + 22,
            ty2 = y + 42,
            holder = esc(holder),
            short = esc(short),
        );
    }
    s.push_str("</svg>");
    s
}

/// `live`, `revoked`, `expired`.
pub(crate) fn state_name(state: i32) -> &'static str {
    match pb::LinkState::try_from(state) {
        Ok(pb::LinkState::Revoked) => "revoked",
        Ok(pb::LinkState::Expired) => "expired",
        Ok(pb::LinkState::Live) => "live",
        _ => "unknown",
    }
}

/// Live links (bars) and agents holding authority (line) at each point of the window.
pub(crate) fn timeline(points: &[pb::TimelinePoint]) -> String {
    const W: u32 = 720;
    const H: u32 = 180;
    if points.is_empty() {
        return String::new();
    }
    let max = points
        .iter()
        .map(|p| p.live_links.max(p.agents))
        .max()
        .unwrap_or(0)
        .max(1);
    let n = u32::try_from(points.len()).unwrap_or(1).max(1);
    let bar = (W - 40) / n;
    let y = |v: u32| {
        let scaled = u64::from(v) * u64::from(H - 40) / u64::from(max);
        H - 20 - u32::try_from(scaled).unwrap_or(H - 40)
    };
    let mut s = format!(
        r#"<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" aria-label="live authority over time"><line class="axis" x1="30" y1="{b}" x2="{W}" y2="{b}"/><text class="small" x="0" y="{t}">{max}</text><text class="small" x="0" y="{b}">0</text>"#,
        b = H - 20,
        t = y(max) + 4,
    );
    let mut line = String::new();
    for (i, p) in points.iter().enumerate() {
        let i = u32::try_from(i).unwrap_or(0);
        let x = 32 + i * bar;
        let top = y(p.live_links);
        let _ = write!(
            s,
            r#"<rect class="bar" x="{x}" y="{top}" width="{w}" height="{h}"><title>{n} live links, {a} agents</title></rect>"#,
            w = bar.saturating_sub(2).max(1),
            h = H - 20 - top,
            n = p.live_links,
            a = p.agents,
        );
        let _ = write!(line, "{} {} ", x + bar / 2, y(p.agents));
    }
    let _ = write!(
        s,
        r#"<polyline class="agents" points="{}"/></svg>"#,
        line.trim_end()
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, parent: &str, state: pb::LinkState) -> pb::LinkNode {
        pb::LinkNode {
            link_id: id.into(),
            parent_link_id: parent.into(),
            holder_agent_id: format!("spiffe://t/{id}"),
            state: state as i32,
            ..Default::default()
        }
    }

    #[test]
    fn a_tree_draws_each_link_once_with_its_state() {
        let links = [
            node("aa", "", pb::LinkState::Live),
            node("bb", "aa", pb::LinkState::Revoked),
            node("cc", "bb", pb::LinkState::Revoked),
        ];
        let svg = tree(&links);
        assert_eq!(svg.matches("<g class=\"node").count(), 3);
        assert_eq!(svg.matches("node revoked").count(), 2);
        assert_eq!(svg.matches("class=\"edge\"").count(), 2);
        // A broken answer (an id twice, one its own parent's child) still ends.
        let broken = [
            node("aa", "", pb::LinkState::Live),
            node("aa", "aa", pb::LinkState::Live),
        ];
        assert_eq!(tree(&broken).matches("<g class=\"node").count(), 1);
    }

    #[test]
    fn the_chart_scales_large_counts_without_overflow() {
        let points = [pb::TimelinePoint {
            time_ms: 1,
            live_links: u32::MAX,
            agents: 3,
        }];
        assert!(timeline(&points).contains("class=\"bar\""));
    }
}
