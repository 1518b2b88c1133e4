//! Projection pushdown into a source task, with nested fields (Flink's
//! `SupportsProjectionPushDown`): the operators chained onto a source (see [`ScanChain`]) are
//! rewritten to read only the columns, and of a ROW column only the fields, that they use, and the
//! source is asked to emit just those. A ROW column whose every use is a field access (or a copy
//! to a column whose every use is) is flattened: each field it uses becomes a column of its own,
//! so the source never builds the row. A column nobody reads is not emitted at all.
//!
//! The chain's output is unchanged, so nothing above the source task notices.

use std::collections::BTreeSet;
use std::sync::Arc;

use streamsql_engine::connectors::{ProjectedColumn, SourceFactory};
use streamsql_engine::expr::functions::CmpOp;
use streamsql_engine::expr::{Expr, ScalarFunction};
use streamsql_engine::types::DataType;
use streamsql_engine::value::Value;

use super::{ChainStage, ScanChain};
use crate::binder::ScopeColumn;

/// How the operators after a column use it.
#[derive(Clone, Debug, PartialEq)]
enum Use {
    Unused,
    /// Only these fields of the ROW.
    Fields(BTreeSet<usize>),
    Whole,
}

impl Use {
    fn merge(&mut self, other: &Use) {
        *self = match (std::mem::replace(self, Use::Unused), other) {
            (Use::Whole, _) | (_, Use::Whole) => Use::Whole,
            (Use::Unused, x) => x.clone(),
            (x, Use::Unused) => x,
            (Use::Fields(mut a), Use::Fields(b)) => {
                a.extend(b.iter().copied());
                Use::Fields(a)
            }
        };
    }
}

/// Where a column of the original chain went in the rewritten one.
#[derive(Clone, Debug)]
enum Rep {
    Dropped,
    Whole(usize),
    /// Field `.0` of the ROW is column `.1`.
    Flat(Vec<(usize, usize)>),
}

/// The field a `ROW_FIELD(Column(c))` reads, with `c`.
fn field_access(e: &Expr) -> Option<(usize, usize)> {
    match e {
        Expr::Call {
            func: ScalarFunction::RowField(f),
            args,
            ..
        } => match args.as_slice() {
            [Expr::Column(c)] => Some((*c, *f)),
            _ => None,
        },
        _ => None,
    }
}

/// Records what `e` reads of the columns in `uses`. The walk is a rewrite whose result is
/// discarded: replacing a field access stops it from descending to the column below, which
/// would count as a use of the whole ROW.
fn record_uses(e: &Expr, uses: &mut [Use]) {
    let _ = e.rewrite::<std::convert::Infallible>(&mut |x| {
        if let Some((c, f)) = field_access(x) {
            if let Some(u) = uses.get_mut(c) {
                u.merge(&Use::Fields(BTreeSet::from([f])));
            }
            return Ok(Some(Expr::Literal(Default::default())));
        }
        if let Expr::Column(c) = x {
            if let Some(u) = uses.get_mut(*c) {
                *u = Use::Whole;
            }
        }
        Ok(None)
    });
}

/// `e` over the rewritten columns; `None` if it reads a column in a way the rewrite did not
/// plan for (then nothing is pushed down).
fn rewrite(e: &Expr, reps: &[Rep]) -> Option<Expr> {
    e.rewrite::<()>(&mut |x| {
        if let Some((c, f)) = field_access(x) {
            if let Some(Rep::Flat(fields)) = reps.get(c) {
                let (_, to) = fields.iter().find(|(g, _)| *g == f).ok_or(())?;
                return Ok(Some(Expr::Column(*to)));
            }
        }
        match x {
            Expr::Column(c) => match reps.get(*c) {
                Some(Rep::Whole(to)) => Ok(Some(Expr::Column(*to))),
                _ => Err(()),
            },
            _ => Ok(None),
        }
    })
    .ok()
}

/// The number of columns stage `s` reads.
fn input_width(s: &ChainStage, output_width: usize) -> usize {
    match s {
        ChainStage::Calc { input, .. } => input.len(),
        ChainStage::Watermark { .. } => output_width,
    }
}

/// A source, the columns it emits, and the operators chained onto it.
pub(super) type PushedDown = (Arc<dyn SourceFactory>, Vec<ScopeColumn>, Vec<ChainStage>);

/// The source emitting only what the chain reads, its columns, and the chain rewritten over
/// them; `None` when the chain reads every column whole or the source cannot project.
pub(super) fn push_projection(chain: &ScanChain) -> Option<PushedDown> {
    if chain.stages.is_empty() {
        return None;
    }
    // Backwards: what each stage's input must provide.
    let out_width = chain
        .stages
        .iter()
        .fold(chain.physical.len(), |width, s| match s {
            ChainStage::Calc { output, .. } => output.len(),
            ChainStage::Watermark { .. } => width,
        });
    let mut uses = vec![Use::Whole; out_width];
    // Per stage, how its output is used (in stage order once reversed below).
    let mut output_uses = Vec::with_capacity(chain.stages.len());
    for stage in chain.stages.iter().rev() {
        let width = input_width(stage, uses.len());
        let mut input = vec![Use::Unused; width];
        match stage {
            ChainStage::Calc { filter, exprs, .. } => {
                if exprs.len() != uses.len() {
                    return None;
                }
                for (o, e) in exprs.iter().enumerate() {
                    match e {
                        Expr::Column(c) if *c < width => input[*c].merge(&uses[o]),
                        // An output nobody reads is not computed.
                        _ if uses[o] == Use::Unused => {}
                        _ => record_uses(e, &mut input),
                    }
                }
                if let Some(f) = filter {
                    record_uses(f, &mut input);
                }
            }
            ChainStage::Watermark { expr, .. } => {
                if width != uses.len() {
                    return None;
                }
                input.clone_from(&uses);
                record_uses(expr, &mut input);
            }
        }
        output_uses.push(std::mem::replace(&mut uses, input));
    }
    output_uses.reverse();
    if uses.len() != chain.physical.len() || uses.iter().all(|u| *u == Use::Whole) {
        return None;
    }
    // The source's columns.
    let mut projected = Vec::new();
    let mut columns = Vec::new();
    let mut reps = Vec::with_capacity(uses.len());
    for (c, (u, col)) in uses.iter().zip(&chain.physical).enumerate() {
        match (u, &col.data_type) {
            (Use::Whole, _) => {
                reps.push(Rep::Whole(columns.len()));
                projected.push(ProjectedColumn {
                    column: c,
                    field: None,
                });
                columns.push(col.clone());
            }
            (Use::Unused, _) => reps.push(Rep::Dropped),
            (Use::Fields(fs), DataType::Row(fields)) => {
                let mut flat = Vec::with_capacity(fs.len());
                for f in fs {
                    let field = fields.get(*f)?;
                    flat.push((*f, columns.len()));
                    projected.push(ProjectedColumn {
                        column: c,
                        field: Some(*f),
                    });
                    columns.push(ScopeColumn {
                        qualifier: col.qualifier.clone(),
                        name: format!("{}.{}", col.name, field.name),
                        data_type: field.data_type.clone(),
                        rowtime: false,
                    });
                }
                reps.push(Rep::Flat(flat));
            }
            (Use::Fields(_), _) => return None,
        }
    }
    let physical = columns.clone();
    // Forwards: each stage over the rewritten columns.
    let mut stages = Vec::with_capacity(chain.stages.len());
    for (stage, used) in chain.stages.iter().zip(&output_uses) {
        match stage {
            ChainStage::Calc {
                filter,
                exprs,
                output,
                ..
            } => {
                let input = std::mem::take(&mut columns);
                let mut new_exprs = Vec::with_capacity(exprs.len());
                let mut new_reps = Vec::with_capacity(exprs.len());
                for (o, e) in exprs.iter().enumerate() {
                    let passed = match e {
                        Expr::Column(c) => reps.get(*c),
                        _ => None,
                    };
                    let rep = match passed {
                        _ if used.get(o) == Some(&Use::Unused) => Rep::Dropped,
                        Some(Rep::Dropped) => Rep::Dropped,
                        Some(Rep::Flat(fields)) => Rep::Flat(
                            fields
                                .iter()
                                .map(|(f, from)| {
                                    new_exprs.push(Expr::Column(*from));
                                    columns.push(input[*from].clone());
                                    (*f, new_exprs.len() - 1)
                                })
                                .collect(),
                        ),
                        _ => {
                            new_exprs.push(rewrite(e, &reps)?);
                            columns.push(output.get(o)?.clone());
                            Rep::Whole(new_exprs.len() - 1)
                        }
                    };
                    new_reps.push(rep);
                }
                let filter = match filter {
                    Some(f) => Some(rewrite(f, &reps)?),
                    None => None,
                };
                stages.push(ChainStage::Calc {
                    filter,
                    exprs: new_exprs,
                    input,
                    output: columns.clone(),
                });
                reps = new_reps;
            }
            ChainStage::Watermark {
                expr,
                interval_ms,
                idle_ms,
                description,
            } => stages.push(ChainStage::Watermark {
                expr: rewrite(expr, &reps)?,
                interval_ms: *interval_ms,
                idle_ms: *idle_ms,
                description: description.clone(),
            }),
        }
    }
    // The chain's output must come out as before.
    let unchanged = reps.len() == out_width
        && reps
            .iter()
            .enumerate()
            .all(|(i, r)| matches!(r, Rep::Whole(j) if *j == i));
    if !unchanged {
        return None;
    }
    let source = chain.source.project(&projected)?;
    Some((source, physical, stages))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uses_merge_to_the_widest() {
        let mut u = Use::Unused;
        u.merge(&Use::Fields(BTreeSet::from([1])));
        u.merge(&Use::Fields(BTreeSet::from([3])));
        assert_eq!(u, Use::Fields(BTreeSet::from([1, 3])));
        u.merge(&Use::Whole);
        assert_eq!(u, Use::Whole);
        u.merge(&Use::Unused);
        assert_eq!(u, Use::Whole);
    }
}

/// `e`'s conjuncts.
fn conjuncts(e: Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::And(items) => items.into_iter().for_each(|x| conjuncts(x, out)),
        other => out.push(other),
    }
}

/// `Column(c) = literal` (either way round), as `(c, literal)`.
fn column_equals_literal(e: &Expr) -> Option<(usize, Value)> {
    let Expr::Call {
        func: ScalarFunction::Cmp(CmpOp::Eq),
        args,
        ..
    } = e
    else {
        return None;
    };
    match args.as_slice() {
        [Expr::Column(c), Expr::Literal(v)] | [Expr::Literal(v), Expr::Column(c)]
            if !v.is_null() =>
        {
            Some((*c, v.clone()))
        }
        _ => None,
    }
}

/// `e` with comparisons of two literals and CASE branches on constant conditions folded.
fn fold(e: &Expr) -> Expr {
    let folded = e.rewrite::<std::convert::Infallible>(&mut |x| {
        Ok(match x {
            Expr::Call {
                func: func @ ScalarFunction::Cmp(CmpOp::Eq),
                args,
                ret,
            } if args.len() == 2 => {
                let (a, b) = (fold(&args[0]), fold(&args[1]));
                Some(match (&a, &b) {
                    (Expr::Literal(x), Expr::Literal(y))
                        if !x.is_null()
                            && !y.is_null()
                            && std::mem::discriminant(x) == std::mem::discriminant(y) =>
                    {
                        Expr::Literal(Value::Boolean(x == y))
                    }
                    _ => Expr::Call {
                        func: func.clone(),
                        args: vec![a, b],
                        ret: ret.clone(),
                    },
                })
            }
            Expr::Case { whens, otherwise } => {
                let mut kept = Vec::with_capacity(whens.len());
                let mut otherwise = otherwise.as_deref().map(fold);
                for (cond, then) in whens {
                    match fold(cond) {
                        Expr::Literal(Value::Boolean(false) | Value::Null) => {}
                        Expr::Literal(Value::Boolean(true)) => {
                            otherwise = Some(fold(then));
                            break;
                        }
                        cond => kept.push((cond, fold(then))),
                    }
                }
                Some(if kept.is_empty() {
                    otherwise.unwrap_or(Expr::Literal(Value::Null))
                } else {
                    Expr::Case {
                        whens: kept,
                        otherwise: otherwise.map(Box::new),
                    }
                })
            }
            _ => None,
        })
    });
    match folded {
        Ok(x) => x,
        Err(never) => match never {},
    }
}

/// Hands the source the `column = literal` conjuncts of the chained filters that read a source
/// column passed through unchanged and that the source can apply itself (Flink's filter
/// pushdown); they leave the chain, and the operator reading the source's columns sees that
/// column as the constant and is folded. Returns the chain unchanged when nothing is pushed.
///
/// A pushed filter also runs before the watermark assigner, which then sees only the rows that
/// pass: its watermark is the largest over fewer rows, so never ahead of the one it had.
pub(super) fn push_filters(chain: &ScanChain) -> ScanChain {
    let mut out = chain.clone();
    // For each column of the current stage's input: the source column it passes on unchanged.
    let mut origin: Vec<Option<usize>> = (0..chain.physical.len()).map(Some).collect();
    let mut constants: Vec<(usize, Value)> = Vec::new();
    for stage in &mut out.stages {
        let ChainStage::Calc { filter, exprs, .. } = stage else {
            continue;
        };
        if let Some(f) = filter.take() {
            let mut all = Vec::new();
            conjuncts(f, &mut all);
            let mut kept = Vec::with_capacity(all.len());
            for conjunct in all {
                let pushed = column_equals_literal(&conjunct).and_then(|(c, v)| {
                    let p = (*origin.get(c)?)?;
                    let source = out.source.filter_equal(p, &v)?;
                    Some((source, p, v))
                });
                match pushed {
                    Some((source, p, v)) => {
                        out.source = source;
                        out.filters.push((p, v.clone()));
                        constants.push((p, v));
                    }
                    None => kept.push(conjunct),
                }
            }
            *filter = match kept.len() {
                0 => None,
                1 => kept.pop(),
                _ => Some(Expr::And(kept)),
            };
        }
        origin = exprs
            .iter()
            .map(|e| match e {
                Expr::Column(c) => origin.get(*c).copied().flatten(),
                _ => None,
            })
            .collect();
    }
    if constants.is_empty() {
        return chain.clone();
    }
    // The first stage reads the source's columns: the pushed columns are constants there.
    let constant = |e: &Expr| -> Expr {
        let substituted = e.rewrite::<std::convert::Infallible>(&mut |x| {
            Ok(match x {
                Expr::Column(c) => constants
                    .iter()
                    .find(|(p, _)| p == c)
                    .map(|(_, v)| Expr::Literal(v.clone())),
                _ => None,
            })
        });
        match substituted {
            Ok(x) => fold(&x),
            Err(never) => match never {},
        }
    };
    match out.stages.first_mut() {
        Some(ChainStage::Calc { filter, exprs, .. }) => {
            *exprs = exprs.iter().map(constant).collect();
            *filter = filter.as_ref().map(constant);
        }
        Some(ChainStage::Watermark { expr, .. }) => *expr = constant(expr),
        None => {}
    }
    out
}

#[cfg(test)]
mod fold_tests {
    use super::*;
    use streamsql_engine::types::DataType;

    fn eq(a: Expr, b: Expr) -> Expr {
        Expr::Call {
            func: ScalarFunction::Cmp(CmpOp::Eq),
            args: vec![a, b],
            ret: DataType::Boolean,
        }
    }

    #[test]
    fn a_case_on_a_known_constant_folds_to_its_branch() {
        let int = |v| Expr::Literal(Value::Int(v));
        let case = Expr::Case {
            whens: vec![
                (eq(int(2), int(0)), Expr::Column(1)),
                (eq(int(2), int(1)), Expr::Column(2)),
            ],
            otherwise: Some(Box::new(Expr::Column(3))),
        };
        assert_eq!(fold(&case), Expr::Column(3));
        let case = Expr::Case {
            whens: vec![
                (eq(Expr::Column(0), int(0)), Expr::Column(1)),
                (eq(int(1), int(1)), Expr::Column(2)),
            ],
            otherwise: None,
        };
        assert_eq!(
            fold(&case),
            Expr::Case {
                whens: vec![(eq(Expr::Column(0), int(0)), Expr::Column(1))],
                otherwise: Some(Box::new(Expr::Column(2))),
            }
        );
        // NULL never equals: the comparison is left to run.
        let null = eq(Expr::Literal(Value::Null), int(1));
        assert_eq!(fold(&null), null);
    }
}

/// Moves each Calc without a filter that directly follows the watermark assigner below it, as
/// Flink's `ProjectWatermarkAssignerTransposeRule` does, when the Calc passes on unchanged every
/// column the watermark expression reads (the assigner then sees the same rows and times), and
/// fuses it with the Calc below; a Calc left computing its input unchanged goes away.
pub(super) fn transpose_watermark(chain: &ScanChain) -> ScanChain {
    let mut out = chain.clone();
    let mut i = 0;
    while i + 1 < out.stages.len() {
        let moved = match (&out.stages[i], &out.stages[i + 1]) {
            (
                ChainStage::Watermark {
                    expr,
                    interval_ms,
                    idle_ms,
                    description,
                },
                ChainStage::Calc {
                    filter: None,
                    exprs,
                    ..
                },
            ) => {
                let mut fits = true;
                let rewritten = expr.rewrite::<()>(&mut |x| match x {
                    Expr::Column(c) => match exprs.iter().position(|e| *e == Expr::Column(*c)) {
                        Some(j) => Ok(Some(Expr::Column(j))),
                        None => {
                            fits = false;
                            Err(())
                        }
                    },
                    _ => Ok(None),
                });
                match rewritten {
                    Ok(expr) if fits => Some(ChainStage::Watermark {
                        expr,
                        interval_ms: *interval_ms,
                        idle_ms: *idle_ms,
                        description: description.clone(),
                    }),
                    _ => None,
                }
            }
            _ => None,
        };
        match moved {
            Some(watermark) => {
                out.stages[i] = out.stages[i + 1].clone();
                out.stages[i + 1] = watermark;
                if i > 0 {
                    if let Some(fused) = fuse_stages(&out.stages[i - 1], &out.stages[i]) {
                        out.stages[i - 1] = fused;
                        out.stages.remove(i);
                        i -= 1;
                    }
                }
            }
            None => i += 1,
        }
    }
    out.stages.retain(|s| !is_identity(s));
    out
}

/// Two consecutive Calcs as one, when no expression of the lower one would be evaluated more
/// often.
fn fuse_stages(below: &ChainStage, above: &ChainStage) -> Option<ChainStage> {
    let (
        ChainStage::Calc {
            filter: below_filter,
            exprs: below_exprs,
            input,
            ..
        },
        ChainStage::Calc {
            filter,
            exprs,
            output,
            ..
        },
    ) = (below, above)
    else {
        return None;
    };
    let projections: Vec<(Expr, ScopeColumn)> =
        exprs.iter().cloned().zip(output.iter().cloned()).collect();
    if !super::fusable(below_exprs, filter.as_ref(), &projections) {
        return None;
    }
    let (filter, projections) = super::fuse(
        below_filter.clone(),
        below_exprs,
        filter.clone(),
        projections,
    );
    Some(ChainStage::Calc {
        filter,
        exprs: projections.into_iter().map(|(e, _)| e).collect(),
        input: input.clone(),
        output: output.clone(),
    })
}

/// A Calc that emits its input unchanged.
pub(super) fn is_identity(stage: &ChainStage) -> bool {
    match stage {
        ChainStage::Calc {
            filter: None,
            exprs,
            input,
            ..
        } => {
            exprs.len() == input.len()
                && exprs.iter().enumerate().all(|(i, e)| *e == Expr::Column(i))
        }
        _ => false,
    }
}
