//! `conclave build-info` (hidden): the subcommands this binary was built
//! with, as JSON `{"subcommands": [...]}`. Cargo features decide them, so
//! `conclave eval` asks here instead of reading help text.

/// Prints the compiled subcommands of `cli` (hidden ones included).
pub fn run(cli: &clap::Command) -> anyhow::Result<()> {
    let subcommands: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).collect();
    super::print_line(serde_json::json!({ "subcommands": subcommands }));
    Ok(())
}
