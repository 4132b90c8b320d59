//! CPU time of the calling thread, for `levit classify --stats`: decode workers and
//! engines share the cores, so their wall times overlap and say little; their CPU
//! times add up to what each stage costs.

use std::time::Duration;

/// CPU time the calling thread has used so far, or `None` where the OS does not say.
#[cfg(unix)]
pub fn thread_cpu_time() -> Option<Duration> {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec for the duration of the call, and
    // CLOCK_THREAD_CPUTIME_ID is a clock every supported unix provides (an error
    // return leaves `t` unused).
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    (rc == 0).then(|| Duration::new(t.tv_sec as u64, t.tv_nsec as u32))
}

/// CPU time the calling thread has used so far, or `None` where the OS does not say.
#[cfg(not(unix))]
pub fn thread_cpu_time() -> Option<Duration> {
    None
}

/// Measures the CPU time of the calling thread from its creation to
/// [`ThreadTimer::elapsed`], falling back to wall time where there is no thread clock.
pub struct ThreadTimer {
    cpu: Option<Duration>,
    wall: std::time::Instant,
}

impl ThreadTimer {
    /// Starts measuring.
    pub fn start() -> ThreadTimer {
        ThreadTimer {
            cpu: thread_cpu_time(),
            wall: std::time::Instant::now(),
        }
    }

    /// CPU (or wall) time since [`ThreadTimer::start`].
    pub fn elapsed(&self) -> Duration {
        match (self.cpu, thread_cpu_time()) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => self.wall.elapsed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sleeping_thread_uses_no_cpu_time_and_a_busy_one_no_more_than_wall_time() {
        if thread_cpu_time().is_none() {
            return;
        }
        let timer = ThreadTimer::start();
        std::thread::sleep(Duration::from_millis(30));
        let slept = timer.elapsed();
        assert!(slept < Duration::from_millis(15), "{slept:?} while asleep");
        // Spin until 20 ms of CPU time have passed (the cores may be shared: wall time
        // says nothing about how much of it this thread got), then compare.
        let wall = std::time::Instant::now();
        let mut x = 0u64;
        while timer.elapsed() < slept + Duration::from_millis(20) {
            assert!(
                wall.elapsed() < Duration::from_secs(60),
                "the thread clock stands still"
            );
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let busy = timer.elapsed() - slept;
        assert!(
            busy <= wall.elapsed() + Duration::from_millis(1),
            "{busy:?} in {:?}",
            wall.elapsed()
        );
    }
}
