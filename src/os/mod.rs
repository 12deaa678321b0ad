//! The operating system around the kernel hooks: /proc, cgroups, COMMAND's
//! process, who a process is, and what our privileges allow. Imports the model
//! only.

pub mod cgroup;
pub mod command;
pub mod identity;
pub mod procs;
pub mod system;
