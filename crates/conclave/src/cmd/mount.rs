//! `conclave mount`: presents a file server's tree through FUSE so
//! unmodified programs (NGINX) keep their files on a protected image; the
//! work is `conclave_mount::run`.

/// Arguments: the mount settings of `conclave-mount`.
pub use conclave_mount::MountSettings as Args;

/// Mounts and serves until SIGTERM/SIGINT, then unmounts.
pub fn run(a: Args) -> anyhow::Result<()> {
    Ok(conclave_mount::run(&a)?)
}
