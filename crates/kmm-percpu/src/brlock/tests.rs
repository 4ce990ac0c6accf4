//! `BrLock`: shared and exclusive access, and readers on several counts
//! beside a writer (Miri's race detector checks the handshake).

extern crate std;

use alloc::vec::Vec;

use super::BrLock;

#[test]
fn readers_share_and_a_writer_excludes() {
    let mut lock = BrLock::new(5u32, 2);
    {
        let (a, b) = (lock.read(0), lock.read(1));
        let c = lock.read(7); // any number: counts are taken modulo their number
        assert_eq!((*a, *b, *c), (5, 5, 5));
    }
    *lock.write() += 1;
    assert_eq!(*lock.read(1), 6);
    *lock.get_mut() = 9;
    assert_eq!(*lock.write(), 9);
    assert!(
        lock.readers
            .iter()
            .all(|c| c.load(core::sync::atomic::Ordering::Relaxed) == 0)
    );
}

#[test]
fn readers_never_see_a_half_done_write() {
    const ROUNDS: u64 = if cfg!(miri) { 80 } else { 4_000 };
    // The writer keeps both halves equal; readers on their own counts and
    // two on a shared one check that they always are.
    let lock = BrLock::new((0u64, 0u64), 3);
    std::thread::scope(|s| {
        let lock = &lock;
        let readers: Vec<_> = [0usize, 1, 2, 2]
            .into_iter()
            .map(|cpu| {
                s.spawn(move || {
                    let mut last = 0;
                    for _ in 0..ROUNDS {
                        let g = lock.read(cpu);
                        // Both halves read with a yield between them: a
                        // writer let in meanwhile would show.
                        let first = g.0;
                        std::thread::yield_now();
                        assert_eq!(first, g.1, "a reader saw a write half done");
                        assert!(first >= last, "a reader saw the value go back");
                        last = first;
                    }
                })
            })
            .collect();
        s.spawn(move || {
            for _ in 0..ROUNDS / 4 {
                let mut g = lock.write();
                g.0 += 1;
                std::thread::yield_now();
                g.1 += 1;
            }
        });
        for r in readers {
            r.join().unwrap();
        }
    });
    assert_eq!(*lock.read(0), (ROUNDS / 4, ROUNDS / 4));
}
