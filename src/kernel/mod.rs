//! The kernel side: the probe table, the plan of which programs this kernel and
//! these options load, the knobs written before load, loading with the mode
//! fallback, attaching, and the loaded object as one live handle, `Live`: the
//! poll loop reaches the kernel through it only.

mod attach;
mod knobs;
pub mod kretprobe;
mod live;
mod load;
mod plan;
pub mod probes;

pub use live::{EventBuffer, Live, ReturnMisses};
pub use load::{start, Setup};
