//! The relational operators, one file each.
