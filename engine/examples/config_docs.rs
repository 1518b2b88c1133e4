//! Rewrites the key table of docs/config.md from the configuration registry:
//! `cargo run -p streamsql-engine --example config_docs`. A unit test fails while the table is
//! out of date.

use streamsql_engine::config::markdown_table;

fn main() -> std::io::Result<()> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/config.md");
    let doc = std::fs::read_to_string(path)?;
    let (begin, end) = ("<!-- keys:begin -->\n", "<!-- keys:end -->");
    let (Some(start), Some(stop)) = (doc.find(begin), doc.find(end)) else {
        eprintln!("docs/config.md lacks the key table markers");
        std::process::exit(1);
    };
    let start = start + begin.len();
    let new = format!("{}{}{}", &doc[..start], markdown_table(), &doc[stop..]);
    std::fs::write(path, new)?;
    eprintln!("rewrote the key table of {path}");
    Ok(())
}
