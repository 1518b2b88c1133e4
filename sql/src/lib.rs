//! streamsql-sql
