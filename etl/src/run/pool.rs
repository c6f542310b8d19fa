//! The embedded run's memory pool: first come, first served, an operator within its fair share
//! is never starved, and a repartition is never refused.
//!
//! Why not DataFusion's own pools (measured on a 5M-bid day, BENCHMARKS.md sessions 10-11):
//! - `FairSpillPool` caps each spillable operator at `(pool - unspillable) / n`, `n` counting
//!   every spillable operator registered, idle ones and repartitions included: the
//!   duplicate-collapsing `GROUP BY` spilled ~1 GB with most of a 2 GiB pool unused.
//! - `GreedyMemoryPool` removed that spill, but an aggregation that had spilled, or one just
//!   starting, found the pool taken by the other and failed (from 192 MiB down, where the fair
//!   pool completed), and it refused `RepartitionExec`. A refused repartition writes the batch
//!   to its spill pool, and in DataFusion 55.2 that pool's reader can wait forever when two
//!   input tasks spill at once (apache/datafusion#24883, fixed upstream after 55.2); the day
//!   hung that way at 128 MiB.
//!
//! So: a spillable operator may grow while the pool has room. When it has none, an operator
//! still within its fair share (as `FairSpillPool` computes it) is granted anyway, and so is one
//! that cannot spill while all such together stay within the pool; those over their share are
//! refused at their next request and spill, which gives the memory back. Until they have, the
//! pool may stand past `--memory-limit` by the fair shares granted past it and by unspillable
//! memory (itself kept within the limit). A repartition's batches are
//! always granted and counted; they are bounded by its channels' gate (input tasks wait while
//! every output holds a batch), not by the pool. A job that does not fit fails with its largest
//! consumers named.

use std::fmt;
use std::sync::Mutex;

use datafusion::common::human_readable_size;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};

/// The prefix DataFusion names a repartition's reservations with (`RepartitionExec[0]`, ...).
const REPARTITION: &str = "RepartitionExec[";

#[derive(Debug)]
pub(super) struct RunPool {
    limit: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Bytes held by every consumer.
    used: usize,
    /// Bytes held by consumers that cannot spill, and by repartitions.
    fixed: usize,
    /// Registered consumers that can spill, repartitions excepted.
    spillable: usize,
}

fn is_repartition(consumer: &MemoryConsumer) -> bool {
    consumer.name().starts_with(REPARTITION)
}

/// Whether the pool may refuse `consumer` and count on it to spill.
fn spills(consumer: &MemoryConsumer) -> bool {
    consumer.can_spill() && !is_repartition(consumer)
}

impl RunPool {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            limit,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // every update is one step under the lock: the counts stay whole after a panic elsewhere
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl State {
    fn add(&mut self, consumer: &MemoryConsumer, bytes: usize) {
        self.used += bytes;
        if !spills(consumer) {
            self.fixed += bytes;
        }
    }
}

impl MemoryPool for RunPool {
    fn name(&self) -> &str {
        "run"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        if spills(consumer) {
            self.state().spillable += 1;
        }
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        if spills(consumer) {
            self.state().spillable -= 1;
        }
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.state().add(reservation.consumer(), additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        let mut state = self.state();
        state.used -= shrink;
        if !spills(reservation.consumer()) {
            state.fixed -= shrink;
        }
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        let consumer = reservation.consumer();
        let mut state = self.state();
        let room = self.limit.saturating_sub(state.used);
        let granted = if is_repartition(consumer) || additional <= room {
            true
        } else if spills(consumer) {
            let share = self.limit.saturating_sub(state.fixed) / state.spillable.max(1);
            reservation
                .size()
                .checked_add(additional)
                .is_some_and(|wanted| wanted <= share)
        } else {
            // what cannot spill comes before what can: the greedy ones make room by spilling
            state
                .fixed
                .checked_add(additional)
                .is_some_and(|fixed| fixed <= self.limit)
        };
        if !granted {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "cannot reserve {} more for {} (holding {}): {} of the pool's {} in use",
                human_readable_size(additional),
                consumer.name(),
                human_readable_size(reservation.size()),
                human_readable_size(state.used),
                human_readable_size(self.limit)
            )));
        }
        state.add(consumer, additional);
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.state().used
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit)
    }
}

impl fmt::Display for RunPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "run pool ({} of {} in use)",
            human_readable_size(self.reserved()),
            human_readable_size(self.limit)
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn spilling(pool: &Arc<dyn MemoryPool>, name: &str) -> MemoryReservation {
        MemoryConsumer::new(name)
            .with_can_spill(true)
            .register(pool)
    }

    #[test]
    fn first_come_first_served_while_there_is_room() {
        let pool: Arc<dyn MemoryPool> = Arc::new(RunPool::new(100));
        let a = spilling(&pool, "GroupedHashAggregateStream[0]");
        // registered and idle: they do not cap a at a quarter, as FairSpillPool would
        let idle: Vec<_> = (1..4)
            .map(|i| spilling(&pool, &format!("GroupedHashAggregateStream[{i}]")))
            .collect();
        a.try_grow(90).expect("90 of 100 free");
        let join = MemoryConsumer::new("HashJoinInput").register(&pool);
        join.try_grow(10).expect("exactly what is left");
        // what cannot spill comes first: a will be refused and spill
        join.try_grow(80)
            .expect("unspillable ones together within the pool");
        let refused = join.try_grow(11).expect_err("past the pool");
        assert!(
            matches!(refused, DataFusionError::ResourcesExhausted(_)),
            "{refused}"
        );
        assert_eq!(join.size(), 90, "a refused reservation does not grow");
        a.try_grow(1)
            .expect_err("a is over its share and the pool is full: a spills");
        assert_eq!(pool.reserved(), 180);
        drop((a, idle, join));
        assert_eq!(
            pool.reserved(),
            0,
            "dropped reservations give everything back"
        );
    }

    #[test]
    fn an_operator_within_its_fair_share_is_never_starved() {
        let pool: Arc<dyn MemoryPool> = Arc::new(RunPool::new(100));
        let greedy = spilling(&pool, "GroupedHashAggregateStream[0]");
        let late = spilling(&pool, "GroupedHashAggregateStream[1]");
        greedy
            .try_grow(100)
            .expect("the whole pool, while late holds nothing");
        // the pool is full, but late's fair share is 50: it may start, and greedy spills
        late.try_grow(30).expect("within its share");
        assert_eq!(pool.reserved(), 130, "over the limit until greedy spills");
        late.try_grow(21).expect_err("past its share, with no room");
        greedy
            .try_grow(1)
            .expect_err("greedy is refused until it spills");
        greedy.free();
        late.try_grow(60)
            .expect("room again: first come, first served");
        assert_eq!(pool.reserved(), 90);
    }

    #[test]
    fn a_repartition_is_granted_and_counted() {
        let pool: Arc<dyn MemoryPool> = Arc::new(RunPool::new(100));
        let agg = spilling(&pool, "GroupedHashAggregateStream[0]");
        let repartition = spilling(&pool, "RepartitionExec[1]");
        agg.try_grow(80).expect("room");
        // refusing it would send the batch to DataFusion 55.2's spill pool, which can hang
        repartition
            .try_grow(60)
            .expect("a repartition is never refused");
        assert_eq!(pool.reserved(), 140);
        // agg's fair share is what the repartition leaves, and agg is the only spillable one
        agg.try_grow(1)
            .expect_err("the repartition's batches count against agg");
        repartition.shrink(60);
        agg.try_grow(20).expect("given back");
        assert_eq!(pool.reserved(), 100);
    }

    #[test]
    fn a_huge_request_is_refused_not_wrapped() {
        let pool: Arc<dyn MemoryPool> = Arc::new(RunPool::new(100));
        let a = MemoryConsumer::new("ExternalSorterMerge[0]").register(&pool);
        let b = spilling(&pool, "ExternalSorter[0]");
        a.try_grow(1).expect("one byte");
        assert!(a.try_grow(usize::MAX).is_err());
        assert!(b.try_grow(usize::MAX).is_err());
        assert_eq!(pool.reserved(), 1);
    }
}
