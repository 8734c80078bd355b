//! Writes in groups: what arrives while a write is on its way waits, then goes in the next one,
//! as PostgreSQL's and RocksDB's write groups do. No timer: an item alone on an idle inbox is
//! written at once, and under load a group is as large as what came during one write.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

/// The items waiting for the next group, and whether a writer is at work. One per kind of
/// write (commits, outcomes, renewals), shared by everything that submits it.
pub(crate) struct Batcher<T, A> {
    queue: Mutex<Queue<T, A>>,
    /// The most items in one group.
    most: usize,
    /// The most bytes in one group (an item larger goes alone), by `weigh`.
    most_bytes: usize,
    weigh: fn(&T) -> usize,
}

struct Queue<T, A> {
    waiting: std::collections::VecDeque<(T, oneshot::Sender<A>)>,
    writing: bool,
}

impl<T: Send + 'static, A: Send + 'static> Batcher<T, A> {
    /// Groups of at most `most` items and, by `weigh`, `most_bytes` bytes.
    pub(crate) fn new(most: usize, most_bytes: usize, weigh: fn(&T) -> usize) -> Self {
        Self {
            queue: Mutex::new(Queue {
                waiting: std::collections::VecDeque::new(),
                writing: false,
            }),
            most: most.max(1),
            most_bytes,
            weigh,
        }
    }

    /// Queues `item` and, unless a writer is at work, starts one that writes groups with
    /// `write` (which answers each item of a group, in order) until none waits. Every submit
    /// of one batcher passes the same `write`. `None` when the writer stopped without
    /// answering it (it panicked, or the runtime is shutting down). An item whose caller
    /// stopped waiting before its group was taken is not written (a commit's caller has
    /// spooled it, an outcome's has let its lease lapse).
    pub(crate) async fn submit<W, Fut>(self: &Arc<Self>, item: T, write: W) -> Option<A>
    where
        W: Fn(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<A>> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.waiting.push_back((item, answer));
            !std::mem::replace(&mut queue.writing, true)
        };
        if start {
            // Made before the task, so that a task dropped before it ever runs (the runtime
            // shutting down) still hands the queue on.
            let writer = Writer {
                batcher: Arc::clone(self),
                done: false,
            };
            tokio::spawn(writer.write_groups(write));
        }
        answered.await.ok()
    }

    /// The next group: the items waiting, oldest first, up to the bounds (at least one; those
    /// whose caller stopped waiting are dropped). `None`, and no writer at work any more,
    /// when none waits: the loop below ends with an empty group only once the queue is.
    fn next_group(&self) -> Option<Vec<(T, oneshot::Sender<A>)>> {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let mut group = Vec::new();
        let mut bytes = 0usize;
        while group.len() < self.most {
            let Some((item, _)) = queue.waiting.front() else {
                break;
            };
            let weight = (self.weigh)(item);
            if !group.is_empty() && bytes.saturating_add(weight) > self.most_bytes {
                break;
            }
            let Some((item, answer)) = queue.waiting.pop_front() else {
                break;
            };
            if answer.is_closed() {
                continue;
            }
            bytes = bytes.saturating_add(weight);
            group.push((item, answer));
        }
        if group.is_empty() {
            queue.writing = false;
            return None;
        }
        Some(group)
    }
}

/// A writer at work: should it stop before the queue is empty (a panic, or its task dropped
/// as the runtime shuts down, run or not), the items waiting are failed and the next item
/// starts a new writer, so that none waits for one that is gone.
struct Writer<T: Send + 'static, A: Send + 'static> {
    batcher: Arc<Batcher<T, A>>,
    /// Set once the queue is empty and handed on.
    done: bool,
}

impl<T: Send + 'static, A: Send + 'static> Writer<T, A> {
    /// Writes groups until none waits.
    async fn write_groups<W, Fut>(mut self, write: W)
    where
        W: Fn(Vec<T>) -> Fut,
        Fut: Future<Output = Vec<A>>,
    {
        while let Some(group) = self.batcher.next_group() {
            let (items, answers): (Vec<T>, Vec<_>) = group.into_iter().unzip();
            for (answer, written) in answers.into_iter().zip(write(items).await) {
                let _ = answer.send(written);
            }
        }
        // The queue is handed on already: nothing for the drop to do.
        self.done = true;
    }
}

impl<T: Send + 'static, A: Send + 'static> Drop for Writer<T, A> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut queue = self
            .batcher
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        queue.writing = false;
        // Their senders dropped: each caller hears `None`.
        queue.waiting.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn items_arriving_during_a_write_share_the_next_one() {
        let batcher = Arc::new(Batcher::<u32, (u32, usize)>::new(100, usize::MAX, |_| 1));
        let (release, released) = tokio::sync::watch::channel(false);
        let (taken, mut groups) = tokio::sync::mpsc::unbounded_channel();
        let write = move |group: Vec<u32>| {
            let (mut released, taken) = (released.clone(), taken.clone());
            async move {
                let size = group.len();
                let _ = taken.send(size);
                let _ = released.wait_for(|go| *go).await;
                group.into_iter().map(|item| (item, size)).collect()
            }
        };
        let submit = |item| {
            let (batcher, write) = (Arc::clone(&batcher), write.clone());
            tokio::spawn(async move { batcher.submit(item, write).await })
        };
        let first = submit(0);
        // The first group taken (its write waits for the release), the rest arrive.
        assert_eq!(groups.recv().await, Some(1));
        let rest: Vec<_> = (1..=5).map(submit).collect();
        while batcher.queue.lock().unwrap().waiting.len() < 5 {
            tokio::task::yield_now().await;
        }
        release.send(true).unwrap();
        assert_eq!(first.await.unwrap(), Some((0, 1)));
        for (item, answer) in (1..=5).zip(rest) {
            assert_eq!(
                answer.await.unwrap(),
                Some((item, 5)),
                "one group of the five"
            );
        }
    }

    #[tokio::test]
    async fn a_group_is_at_most_its_bound() {
        let batcher = Arc::new(Batcher::<u32, usize>::new(2, usize::MAX, |_| 1));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let write = {
            let gate = Arc::clone(&gate);
            move |group: Vec<u32>| {
                let gate = Arc::clone(&gate);
                async move {
                    gate.acquire().await.unwrap().forget();
                    vec![group.len(); group.len()]
                }
            }
        };
        let submitted: Vec<_> = (0..5)
            .map(|item| {
                let (batcher, write) = (Arc::clone(&batcher), write.clone());
                tokio::spawn(async move { batcher.submit(item, write).await })
            })
            .collect();
        tokio::task::yield_now().await;
        gate.add_permits(10);
        let mut sizes = Vec::new();
        for answer in submitted {
            sizes.push(answer.await.unwrap().unwrap());
        }
        assert!(sizes.iter().all(|size| *size <= 2), "{sizes:?}");
    }

    #[tokio::test]
    async fn a_group_is_at_most_its_bytes_and_a_larger_item_goes_alone() {
        let batcher = Arc::new(Batcher::<usize, usize>::new(100, 10, |weight| *weight));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let write = {
            let gate = Arc::clone(&gate);
            move |group: Vec<usize>| {
                let gate = Arc::clone(&gate);
                async move {
                    gate.acquire().await.unwrap().forget();
                    vec![group.iter().sum(); group.len()]
                }
            }
        };
        let submitted: Vec<_> = [4, 4, 4, 30, 1]
            .into_iter()
            .map(|weight| {
                let (batcher, write) = (Arc::clone(&batcher), write.clone());
                tokio::spawn(async move { batcher.submit(weight, write).await })
            })
            .collect();
        // Let every submit queue (the first group is taken at once, and waits on the gate).
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        gate.add_permits(10);
        let mut bytes = Vec::new();
        for answer in submitted {
            bytes.push(answer.await.unwrap().unwrap());
        }
        assert!(
            bytes.iter().all(|group| *group <= 10 || *group == 30),
            "{bytes:?}"
        );
    }

    #[tokio::test]
    async fn an_item_whose_caller_stopped_waiting_is_not_written() {
        let batcher = Arc::new(Batcher::<u32, u32>::new(100, usize::MAX, |_| 1));
        let (release, released) = tokio::sync::watch::channel(false);
        let (taken, mut groups) = tokio::sync::mpsc::unbounded_channel();
        let write = move |group: Vec<u32>| {
            let (mut released, taken) = (released.clone(), taken.clone());
            async move {
                let _ = taken.send(group.clone());
                let _ = released.wait_for(|go| *go).await;
                group
            }
        };
        let submit = |item| {
            let (batcher, write) = (Arc::clone(&batcher), write.clone());
            tokio::spawn(async move { batcher.submit(item, write).await })
        };
        let first = submit(1);
        assert_eq!(groups.recv().await, Some(vec![1]));
        // Queued behind the first group, then given up on (a commit's caller spooling it).
        let gone = submit(2);
        while batcher.queue.lock().unwrap().waiting.is_empty() {
            tokio::task::yield_now().await;
        }
        gone.abort();
        let _ = gone.await;
        release.send(true).unwrap();
        assert_eq!(first.await.unwrap(), Some(1));
        // The writer finds nothing but the abandoned item: no group, and it leaves.
        while batcher.queue.lock().unwrap().writing {
            tokio::task::yield_now().await;
        }
        assert!(batcher.queue.lock().unwrap().waiting.is_empty());
        // The next item starts a writer of its own, and 2 is never written.
        assert_eq!(submit(3).await.unwrap(), Some(3));
        assert_eq!(groups.recv().await, Some(vec![3]));
    }

    #[tokio::test]
    async fn a_writer_that_panics_fails_those_waiting_and_the_next_item_writes() {
        let batcher = Arc::new(Batcher::<u32, u32>::new(100, usize::MAX, |_| 1));
        let panicking = |_: Vec<u32>| async { panic!("the write failed") };
        assert_eq!(batcher.submit(1, panicking).await, None);
        let echo = |group: Vec<u32>| async move { group };
        assert_eq!(batcher.submit(2, echo).await, Some(2));
    }
}
