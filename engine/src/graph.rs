//! The dataflow graph the planner produces and the runtime instantiates.
//!
//! Nodes are operators (or sources) with a parallelism; edges say how records of one node reach
//! the subtasks of the next (forward, hash by key group, broadcast, rebalance). Operator ids are
//! derived from what the node computes and from its inputs' ids, so the same SQL gives the same ids
//! on every run: state will be matched to operators by them.

use std::fmt::Write;
use std::sync::Arc;

use crate::connectors::chain::ChainedSourceFactory;
use crate::connectors::SourceFactory;
use crate::operator::OperatorFactory;
use crate::types::Schema;

/// How records travel along an edge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Partitioning {
    /// Subtask i to subtask i (equal parallelism).
    Forward,
    /// By the key group of these columns.
    Hash(Vec<usize>),
    /// Every record to every subtask.
    Broadcast,
    /// Round robin, batch by batch.
    Rebalance,
    /// Everything to subtask 0.
    Global,
}

impl Partitioning {
    pub fn name(&self) -> String {
        match self {
            Partitioning::Forward => "FORWARD".into(),
            Partitioning::Hash(cols) => format!(
                "HASH[{}]",
                cols.iter()
                    .map(|c| format!("${c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Partitioning::Broadcast => "BROADCAST".into(),
            Partitioning::Rebalance => "REBALANCE".into(),
            Partitioning::Global => "GLOBAL".into(),
        }
    }
}

/// What makes two nodes the same for sub-plan reuse: digest, parallelism, and per input its
/// index, node and exchange.
type ReuseKey = (String, usize, Vec<(usize, usize, String)>);

/// What a node runs.
#[derive(Clone)]
pub enum NodeKind {
    Source(Arc<dyn SourceFactory>),
    Operator(Arc<dyn OperatorFactory>),
}

/// One operator of the graph.
#[derive(Clone)]
pub struct Node {
    /// Stable id (see module docs).
    pub id: u64,
    /// Short name used in thread names and metrics (`Calc`, `GroupAggregate`, ...).
    pub name: String,
    /// One-line description shown by EXPLAIN.
    pub description: String,
    pub parallelism: usize,
    /// The schema of the records this node emits.
    pub schema: Schema,
    pub kind: NodeKind,
    /// What the node computes, exactly, when the planner can say so (the SQL it was planned from
    /// is not enough: two Calcs over columns of the same name differ): two nodes with the same
    /// digest over the same inputs compute the same rows, and
    /// [`DataflowGraph::reuse_sub_plans`] keeps one of them. `None` for nodes never shared.
    pub digest: Option<String>,
    /// Operators chained onto this node in its own task (a source's computed columns, watermark
    /// assigner and the Calcs above them), in order, as `(name, description)`: EXPLAIN shows
    /// them as operators of their own.
    pub chained: Vec<(String, String)>,
    /// A sink without checkpointed state that needs no checkpoint notifications (`print`,
    /// `blackhole`): [`DataflowGraph::chain_sinks`] may run it in the task of the source that
    /// feeds it.
    pub chainable_sink: bool,
}

impl Node {
    fn new(
        id: u64,
        name: &str,
        description: String,
        chained: Vec<(String, String)>,
        parallelism: usize,
        schema: Schema,
        kind: NodeKind,
    ) -> Node {
        Node {
            id,
            name: name.to_string(),
            description,
            parallelism,
            schema,
            kind,
            chained,
            digest: None,
            chainable_sink: false,
        }
    }
}

/// An edge from the output of `from` to input `input` of `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    pub input: usize,
    pub partitioning: Partitioning,
}

/// Operators and edges, in topological order (every edge goes from a lower to a higher index).
#[derive(Clone, Default)]
pub struct DataflowGraph {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

/// FNV-1a, 64 bit: a stable hash that does not depend on the Rust version or process.
pub fn stable_hash(bytes: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl DataflowGraph {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a node whose id is derived from its description and its inputs' ids; returns its index.
    pub fn add_node(
        &mut self,
        name: &str,
        description: String,
        parallelism: usize,
        schema: Schema,
        kind: NodeKind,
        inputs: &[(usize, Partitioning)],
    ) -> usize {
        self.add_chained_node(
            name,
            description,
            Vec::new(),
            parallelism,
            schema,
            kind,
            inputs,
        )
    }

    /// [`DataflowGraph::add_node`] for a node with operators chained onto it in its task; the id
    /// also covers what they compute.
    #[allow(clippy::too_many_arguments)]
    pub fn add_chained_node(
        &mut self,
        name: &str,
        description: String,
        chained: Vec<(String, String)>,
        parallelism: usize,
        schema: Schema,
        kind: NodeKind,
        inputs: &[(usize, Partitioning)],
    ) -> usize {
        let mut seed = 0u64;
        for (from, _) in inputs {
            seed = seed.rotate_left(7) ^ self.nodes[*from].id;
        }
        let id = self.derive_id(&description, &chained, seed, None);
        let index = self.nodes.len();
        self.nodes.push(Node::new(
            id,
            name,
            description,
            chained,
            parallelism,
            schema,
            kind,
        ));
        for (input, (from, partitioning)) in inputs.iter().enumerate() {
            self.edges.push(Edge {
                from: *from,
                to: index,
                input,
                partitioning: partitioning.clone(),
            });
        }
        index
    }

    /// The id of a node that computes `description` (then its `chained` operators) over inputs
    /// whose ids were mixed into `seed`: different from every other node's (but `except`'s), so
    /// that two identical operators over identical inputs (a self-union) still get distinct ids.
    fn derive_id(
        &self,
        description: &str,
        chained: &[(String, String)],
        seed: u64,
        except: Option<usize>,
    ) -> u64 {
        let mut id = stable_hash(description.as_bytes(), seed);
        for (name, description) in chained {
            id = stable_hash(description.as_bytes(), stable_hash(name.as_bytes(), id));
        }
        while self
            .nodes
            .iter()
            .enumerate()
            .any(|(i, n)| Some(i) != except && n.id == id)
        {
            id = stable_hash(&id.to_le_bytes(), seed);
        }
        id
    }

    /// Places a source task without inputs, as [`DataflowGraph::add_chained_node`] would add it:
    /// a new node, or in place of node `at`, which no edge touches yet (a source task still being
    /// planned that grew), with an id derived from what it now computes. Returns its index.
    #[allow(clippy::too_many_arguments)]
    pub fn put_source_task(
        &mut self,
        at: Option<usize>,
        name: &str,
        description: String,
        chained: Vec<(String, String)>,
        parallelism: usize,
        schema: Schema,
        kind: NodeKind,
    ) -> usize {
        let id = self.derive_id(&description, &chained, 0, at);
        let node = Node::new(id, name, description, chained, parallelism, schema, kind);
        match at {
            Some(index) => {
                debug_assert!(self.edges.iter().all(|e| e.from != index && e.to != index));
                self.nodes[index] = node;
                index
            }
            None => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        }
    }

    /// Sub-plan reuse (Flink's `table.optimizer.reuse-sub-plan-enabled`): of the nodes with the
    /// same digest, parallelism and inputs (the same nodes, by the same exchanges, at the same
    /// input), only the first is kept and feeds the consumers of the others, from the sources
    /// up, so that whole repeated sub-plans (a view read twice) run once. Source nodes (without
    /// inputs) are shared only when `sources` is true. The nodes left without consumers are
    /// removed by [`DataflowGraph::remove_dead_ends`].
    pub fn reuse_sub_plans(&mut self, sources: bool) {
        let n = self.nodes.len();
        let mut survivor: Vec<usize> = (0..n).collect();
        let mut seen: std::collections::HashMap<ReuseKey, usize> = std::collections::HashMap::new();
        for i in 0..n {
            // Edges go from lower to higher indices: the inputs of `i` are settled.
            for e in self.edges.iter_mut().filter(|e| e.to == i) {
                e.from = survivor[e.from];
            }
            let Some(digest) = self.nodes[i].digest.clone() else {
                continue;
            };
            let mut inputs: Vec<(usize, usize, String)> = self
                .edges
                .iter()
                .filter(|e| e.to == i)
                .map(|e| (e.input, e.from, e.partitioning.name()))
                .collect();
            if inputs.is_empty() && !sources {
                continue;
            }
            inputs.sort();
            match seen.entry((digest, self.nodes[i].parallelism, inputs)) {
                std::collections::hash_map::Entry::Occupied(first) => survivor[i] = *first.get(),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(i);
                }
            }
        }
        // A node that was replaced loses its inputs; remove_dead_ends then drops it.
        self.edges.retain(|e| survivor[e.to] == e.to);
    }

    /// Sets what node `index` computes, for [`DataflowGraph::reuse_sub_plans`].
    pub fn set_digest(&mut self, index: usize, digest: String) {
        if let Some(node) = self.nodes.get_mut(index) {
            node.digest = Some(digest);
        }
    }

    /// Removes every node whose output reaches no sink (a node named `...Sink`), such as a `Calc`
    /// the planner fused into the one above it or an input planned for a plan it then discarded:
    /// a task for it would compute rows nobody reads. Indices are renumbered, order and ids kept.
    pub fn remove_dead_ends(&mut self) {
        let n = self.nodes.len();
        let mut live: Vec<bool> = self
            .nodes
            .iter()
            .map(|x| x.name.ends_with("Sink") || x.chained.iter().any(|(n, _)| n.ends_with("Sink")))
            .collect();
        // Edges go from lower to higher indices: one pass from the end settles every node.
        for i in (0..n).rev() {
            if !live[i] {
                live[i] = self.edges.iter().any(|e| e.from == i && live[e.to]);
            }
        }
        self.retain_nodes(&live);
    }

    /// Runs each chainable sink (`print`, `blackhole`) in the task of the source that feeds it,
    /// as Flink chains a sink onto its input: when the sink reads that source task alone, by a
    /// forward exchange at the same parallelism, and is all it feeds. The rows then reach the
    /// sink by a function call instead of a channel, and are freed by the thread that made them.
    /// The source keeps its id; EXPLAIN shows the sink as before. Run after sub-plan reuse, which
    /// may give a source more consumers.
    pub fn chain_sinks(&mut self) {
        let mut chained_away = Vec::new();
        for sink in 0..self.nodes.len() {
            if !self.nodes[sink].chainable_sink {
                continue;
            }
            let inputs = self.inputs_of(sink);
            let [edge] = inputs.as_slice() else {
                continue;
            };
            let from = edge.from;
            let forward = edge.partitioning == Partitioning::Forward;
            let NodeKind::Source(source) = &self.nodes[from].kind else {
                continue;
            };
            if !forward
                || self.outputs_of(from).len() != 1
                || self.nodes[from].parallelism != self.nodes[sink].parallelism
            {
                continue;
            }
            let NodeKind::Operator(factory) = &self.nodes[sink].kind else {
                continue;
            };
            let chained = NodeKind::Source(Arc::new(ChainedSourceFactory::then(
                source,
                std::slice::from_ref(factory),
            )));
            let (name, description, schema) = (
                self.nodes[sink].name.clone(),
                self.nodes[sink].description.clone(),
                self.nodes[sink].schema.clone(),
            );
            let node = &mut self.nodes[from];
            node.kind = chained;
            node.chained.push((name, description));
            node.schema = schema;
            chained_away.push(sink);
            self.edges.retain(|e| e.to != sink);
        }
        let keep: Vec<bool> = (0..self.nodes.len())
            .map(|i| !chained_away.contains(&i))
            .collect();
        self.retain_nodes(&keep);
    }

    /// Keeps the nodes `keep` says to, with the edges between them; indices are renumbered,
    /// order and ids kept.
    fn retain_nodes(&mut self, live: &[bool]) {
        let n = self.nodes.len();
        if live.iter().all(|l| *l) {
            return;
        }
        let mut index = vec![usize::MAX; n];
        let mut next = 0;
        for (i, l) in live.iter().enumerate() {
            if *l {
                index[i] = next;
                next += 1;
            }
        }
        let mut i = 0;
        self.nodes.retain(|_| {
            i += 1;
            live[i - 1]
        });
        self.edges.retain(|e| live[e.from] && live[e.to]);
        for e in &mut self.edges {
            e.from = index[e.from];
            e.to = index[e.to];
        }
    }

    /// Edges into node `to`, ordered by input index.
    pub fn inputs_of(&self, to: usize) -> Vec<&Edge> {
        let mut v: Vec<&Edge> = self.edges.iter().filter(|e| e.to == to).collect();
        v.sort_by_key(|e| e.input);
        v
    }

    /// Edges out of node `from`.
    pub fn outputs_of(&self, from: usize) -> Vec<&Edge> {
        self.edges.iter().filter(|e| e.from == from).collect()
    }

    /// The graph as text, one operator per line, inputs indented under it (what EXPLAIN shows).
    ///
    /// A node that feeds several consumers (a reused sub-plan) is shown in full once, marked
    /// `[k]:`, and as `Reused(reference_id=[k])` after that, as Flink shows reuse.
    pub fn explain(&self) -> String {
        let mut out = String::new();
        let sinks: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.outputs_of(*i).is_empty())
            .collect();
        let mut references = vec![None; self.nodes.len()];
        let mut next = 0;
        for s in sinks {
            self.explain_node(s, 0, None, &mut out, &mut references, &mut next);
        }
        out
    }

    fn explain_node(
        &self,
        i: usize,
        depth: usize,
        via: Option<&Partitioning>,
        out: &mut String,
        references: &mut [Option<usize>],
        next: &mut usize,
    ) {
        let shared = self.outputs_of(i).len() > 1;
        if let Some(k) = references[i] {
            let indent = "  ".repeat(depth);
            let via = via
                .map(|p| format!("+- {} -> ", p.name()))
                .unwrap_or_default();
            let _ = writeln!(out, "{indent}{via}Reused(reference_id=[{k}])");
            return;
        }
        let mark = if shared {
            *next += 1;
            references[i] = Some(*next);
            format!("[{}]:", *next)
        } else {
            String::new()
        };
        let n = &self.nodes[i];
        let line = |out: &mut String, depth: usize, via: Option<String>, name: &str, desc: &str| {
            let indent = "  ".repeat(depth);
            let via = via.map(|p| format!("+- {p} -> ")).unwrap_or_default();
            let _ = writeln!(
                out,
                "{indent}{via}{name}(parallelism={}): {desc}",
                n.parallelism
            );
        };
        // Chained operators first (the last one emits the node's output), then the node itself.
        // The reference mark goes on the task's first line.
        let mut via = via.map(Partitioning::name);
        let mut mark = Some(mark);
        let mut depth = depth;
        for (name, desc) in n.chained.iter().rev() {
            let name = format!("{}{name}", mark.take().unwrap_or_default());
            line(out, depth, via.take(), &name, desc);
            via = Some(Partitioning::Forward.name());
            depth += 1;
        }
        let name = format!("{}{}", mark.take().unwrap_or_default(), n.name);
        line(out, depth, via, &name, &n.description);
        for e in self.inputs_of(i) {
            self.explain_node(
                e.from,
                depth + 1,
                Some(&e.partitioning),
                out,
                references,
                next,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::EngineError;
    use crate::operator::{Operator, TaskContext};

    fn op() -> NodeKind {
        NodeKind::Operator(Arc::new(
            |_: &TaskContext| -> crate::error::Result<Box<dyn Operator>> {
                Err(EngineError::Internal {
                    message: "not run in this test".into(),
                })
            },
        ))
    }

    #[test]
    fn identical_sub_plans_run_once() {
        let mut g = DataflowGraph::new();
        let schema = Schema::new(Vec::new());
        let node = |g: &mut DataflowGraph,
                    name: &str,
                    digest: Option<&str>,
                    inputs: &[(usize, Partitioning)]| {
            let i = g.add_node(name, name.into(), 1, schema.clone(), op(), inputs);
            if let Some(d) = digest {
                g.set_digest(i, d.into());
            }
            i
        };
        let a = node(&mut g, "Scan", Some("scan t"), &[]);
        let b = node(&mut g, "Scan", Some("scan t"), &[]);
        let a1 = node(
            &mut g,
            "Calc",
            Some("calc x"),
            &[(a, Partitioning::Forward)],
        );
        let b1 = node(
            &mut g,
            "Calc",
            Some("calc x"),
            &[(b, Partitioning::Forward)],
        );
        // Same digest but another exchange, and no digest at all: kept apart.
        let b2 = node(
            &mut g,
            "Calc",
            Some("calc x"),
            &[(b, Partitioning::Rebalance)],
        );
        let a3 = node(&mut g, "Agg", None, &[(a1, Partitioning::Hash(vec![0]))]);
        let b3 = node(&mut g, "Agg", None, &[(b1, Partitioning::Hash(vec![0]))]);
        node(
            &mut g,
            "Sink",
            None,
            &[
                (a3, Partitioning::Forward),
                (b3, Partitioning::Forward),
                (b2, Partitioning::Forward),
            ],
        );
        let mut without_sources = g.clone();
        g.reuse_sub_plans(true);
        g.remove_dead_ends();
        let names: Vec<&str> = g.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["Scan", "Calc", "Calc", "Agg", "Agg", "Sink"]);
        let edges: Vec<(usize, usize)> = g.edges.iter().map(|e| (e.from, e.to)).collect();
        assert_eq!(
            edges,
            [(0, 1), (0, 2), (1, 3), (1, 4), (3, 5), (4, 5), (2, 5)]
        );
        assert!(g.explain().contains("Reused(reference_id=[1])"));
        // Sources not shared: nothing above them is either.
        without_sources.reuse_sub_plans(false);
        without_sources.remove_dead_ends();
        assert_eq!(without_sources.nodes.len(), 8);
    }

    #[test]
    fn a_stateless_sink_runs_in_the_task_of_the_source_feeding_it_alone() {
        struct NoSource;
        impl SourceFactory for NoSource {
            fn create(
                &self,
                _: &TaskContext,
            ) -> crate::error::Result<Box<dyn crate::connectors::Source>> {
                Err(EngineError::internal("not run in this test"))
            }
        }
        let schema = Schema::new(Vec::new());
        // A source feeding a sink at `sink_p` by `exchange`, and a second sink when `shared`.
        let build = |chainable: bool, sink_p: usize, exchange: Partitioning, shared: bool| {
            let mut g = DataflowGraph::new();
            let scan = g.add_chained_node(
                "TableSourceScan",
                "table=[t]".into(),
                vec![("Calc".into(), "select=[x]".into())],
                1,
                schema.clone(),
                NodeKind::Source(Arc::new(NoSource)),
                &[],
            );
            let sinks = if shared { 2 } else { 1 };
            for k in 0..sinks {
                let sink = g.add_node(
                    "Sink",
                    format!("table=[s{k}], blackhole"),
                    sink_p,
                    schema.clone(),
                    op(),
                    &[(scan, exchange.clone())],
                );
                g.nodes[sink].chainable_sink = chainable;
            }
            g
        };
        let g = build(true, 1, Partitioning::Forward, false);
        let (scan_id, explained) = (g.nodes[0].id, g.explain());
        let mut chained = g;
        chained.chain_sinks();
        assert_eq!(chained.nodes.len(), 1);
        assert!(chained.edges.is_empty());
        let node = &chained.nodes[0];
        assert!(matches!(node.kind, NodeKind::Source(_)));
        assert_eq!(node.id, scan_id, "the source keeps its id");
        assert_eq!(
            node.chained,
            [
                ("Calc".to_string(), "select=[x]".to_string()),
                ("Sink".to_string(), "table=[s0], blackhole".to_string())
            ]
        );
        assert_eq!(chained.explain(), explained, "EXPLAIN shows the same plan");
        // A stateful sink, another parallelism, another exchange, or a source with two
        // consumers: the sink keeps its own task.
        for (chainable, p, exchange, shared) in [
            (false, 1, Partitioning::Forward, false),
            (true, 2, Partitioning::Rebalance, false),
            (true, 1, Partitioning::Rebalance, false),
            (true, 1, Partitioning::Forward, true),
        ] {
            let mut g = build(chainable, p, exchange, shared);
            let nodes = g.nodes.len();
            g.chain_sinks();
            assert_eq!(g.nodes.len(), nodes);
        }
    }

    #[test]
    fn nodes_that_reach_no_sink_are_removed() {
        let mut g = DataflowGraph::new();
        let schema = Schema::new(Vec::new());
        let scan = g.add_node("Scan", "scan".into(), 1, schema.clone(), op(), &[]);
        let fused_away = g.add_node(
            "Calc",
            "a".into(),
            1,
            schema.clone(),
            op(),
            &[(scan, Partitioning::Forward)],
        );
        let _after_it = g.add_node(
            "Calc",
            "b".into(),
            1,
            schema.clone(),
            op(),
            &[(fused_away, Partitioning::Forward)],
        );
        let calc = g.add_node(
            "Calc",
            "c".into(),
            1,
            schema.clone(),
            op(),
            &[(scan, Partitioning::Forward)],
        );
        let sink_id = {
            let s = g.add_node(
                "Sink",
                "sink".into(),
                1,
                schema.clone(),
                op(),
                &[(calc, Partitioning::Forward)],
            );
            g.nodes[s].id
        };
        let ids: Vec<u64> = [scan, calc].iter().map(|i| g.nodes[*i].id).collect();
        g.remove_dead_ends();
        let names: Vec<&str> = g.nodes.iter().map(|n| n.description.as_str()).collect();
        assert_eq!(names, ["scan", "c", "sink"]);
        assert_eq!(
            g.nodes.iter().map(|n| n.id).collect::<Vec<_>>(),
            [ids[0], ids[1], sink_id]
        );
        let edges: Vec<(usize, usize)> = g.edges.iter().map(|e| (e.from, e.to)).collect();
        assert_eq!(edges, [(0, 1), (1, 2)]);
    }
}
