//! Why a trace ended, and how reading the rest of the buffer settles it.

/// Why tracing ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Interrupted,
    CountReached,
    DurationElapsed,
    TimedOut,
    OutputClosed,
    /// COMMAND exited with this status (128+N for signal N).
    CommandExited(u8),
    /// A --forbid expression matched.
    Forbidden,
    /// Every --pid process exited, and nothing else could be traced (strace -p's end).
    PidsExited,
}

/// What reading the rest of the buffer at the end showed.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Drained {
    pub(super) output_closed: bool,
    pub(super) forbidden: bool,
    pub(super) count_reached: bool,
}

impl Outcome {
    /// Whether the events still buffered are read before the end: not when the
    /// reader is gone, the count is met, or a forbidden event already ended it.
    pub(super) fn reads_the_rest(self) -> bool {
        matches!(
            self,
            Outcome::Interrupted
                | Outcome::DurationElapsed
                | Outcome::TimedOut
                | Outcome::CommandExited(_)
                | Outcome::PidsExited
        )
    }

    /// The end, once the rest was read: a closed output, a forbidden event or the
    /// count met among those events says more than why reading stopped (but
    /// COMMAND's status, or its processes' end, stays the reason over a count).
    pub(super) fn after(self, drained: Drained) -> Outcome {
        if drained.output_closed {
            Outcome::OutputClosed
        } else if drained.forbidden {
            Outcome::Forbidden
        } else if drained.count_reached
            && !matches!(self, Outcome::CommandExited(_) | Outcome::PidsExited)
        {
            Outcome::CountReached
        } else {
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_is_settled_by_what_the_rest_of_the_buffer_showed() {
        let nothing = Drained::default();
        let closed = Drained {
            output_closed: true,
            forbidden: true,
            ..nothing
        };
        let forbidden = Drained {
            forbidden: true,
            count_reached: true,
            ..nothing
        };
        let counted = Drained {
            count_reached: true,
            ..nothing
        };
        let exited = Outcome::CommandExited(3);
        assert_eq!(exited.after(nothing), exited);
        assert_eq!(exited.after(closed), Outcome::OutputClosed);
        assert_eq!(exited.after(forbidden), Outcome::Forbidden);
        assert_eq!(exited.after(counted), exited);
        assert_eq!(Outcome::PidsExited.after(counted), Outcome::PidsExited);
        assert_eq!(Outcome::Interrupted.after(counted), Outcome::CountReached);
        assert_eq!(Outcome::TimedOut.after(counted), Outcome::CountReached);
        assert_eq!(
            Outcome::DurationElapsed.after(nothing),
            Outcome::DurationElapsed
        );
        // Ends that read no further.
        for o in [
            Outcome::OutputClosed,
            Outcome::CountReached,
            Outcome::Forbidden,
        ] {
            assert!(!o.reads_the_rest(), "{o:?}");
        }
        assert!(exited.reads_the_rest() && Outcome::Interrupted.reads_the_rest());
    }
}
