//! `conclave content`: arguments of the seed's web content
//! (`conclave_bench::content`).

use std::path::PathBuf;

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory to write into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Extra files, as NAME=BYTES (e.g. 10m.txt=10485760); repeatable.
    #[arg(long = "size", value_name = "NAME=BYTES")]
    pub sizes: Vec<String>,
}

/// Writes the content and lists the files.
pub fn run(a: Args) -> anyhow::Result<()> {
    use conclave_bench::content;
    let extra = a
        .sizes
        .iter()
        .map(|s| content::parse_extra(s))
        .collect::<Result<Vec<_>, _>>()?;
    content::write_seed(&a.out, &extra, |p| super::print_line(p.display()))?;
    Ok(())
}
