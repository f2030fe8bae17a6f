//! `conclave waf-rules N --seed S --out main.conf`: writes the seed's WAF benchmark rule set (rule i
//! denies with 403 when the query argument `testparam` contains a random 6-letter string) as
//! `main.conf` (`SecRuleEngine On` + `Include`) and `main-rules.conf`, reproducible from the seed.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Number of rules.
    pub rules: usize,
    /// Seed of the random strings (same seed, same rules).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Main configuration file to write; the rules go to `<stem>-rules.conf` next to it.
    #[arg(long)]
    pub out: PathBuf,
    /// Load the written rule set with conclave-waf and print how long that took.
    #[arg(long)]
    pub check: bool,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    let rules = conclave_waf::rulegen::write_seed_rule_set(&args.out, args.rules, args.seed)
        .with_context(|| format!("writing {}", args.out.display()))?;
    super::print_line(format_args!(
        "wrote {} ({} rules, seed {}) and {}",
        rules.display(),
        args.rules,
        args.seed,
        args.out.display()
    ));
    if args.check {
        let t = Instant::now();
        let waf =
            conclave_waf::Waf::load(&args.out).with_context(|| format!("loading {}", args.out.display()))?;
        super::print_line(format_args!(
            "loaded {} rules in {:.3} s",
            waf.rule_count(),
            t.elapsed().as_secs_f64()
        ));
    }
    Ok(())
}
