//! The relational operators, one file each.
pub mod calc;
pub mod collect;
pub mod group_agg;
pub mod over_agg;
pub mod watermark_assigner;
pub mod window_agg;
pub mod window_tvf;
