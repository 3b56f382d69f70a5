//! Process hardening for the only process that holds the private key: no
//! core dumps (RLIMIT_CORE = 0) and not dumpable (PR_SET_DUMPABLE = 0, which
//! also keeps other processes of the same user from ptrace-attaching).

/// Disables core dumps of this process. Errors are returned so the binary can
/// refuse to start without them.
pub fn disable_core_dumps() -> std::io::Result<()> {
    use rustix::process::{Resource, Rlimit, setrlimit};
    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )?;
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)?;
    Ok(())
}
