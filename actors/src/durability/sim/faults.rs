//! The faults a schedule strikes with, and how each call to a model store fares under them.
//!
//! The model stores themselves never fail here: the simulation decides, per call, whether the
//! call reaches its store, fails before taking effect, or takes effect and loses its reply
//! (a timeout after Redis ran the script, or after PostgreSQL committed). Redis can restart
//! empty (a wipe: the log's next incarnation, and every open connection dropped, so each one's
//! next call fails, as a real client's does), freeze (every call fails for a while, nothing is
//! lost), or be cut from one replica; PostgreSQL can be down for a while. A replica can crash
//! (SIGKILL: its memory and its calls in flight are gone, its journal stays) and restart.

use super::replica;
use super::world::World;

/// A replica's connections to Redis: its shared one, the flush's own (SPEC: the flush reads on
/// a connection of its own), and the fresh one a half-open probe opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Conn {
    Main,
    Bulk,
    Fresh,
}

/// How one call fares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reach {
    Up,
    /// Fails before taking effect.
    Down(&'static str),
    /// Takes effect; the reply is lost.
    Lost,
}

pub(super) struct Faults {
    /// Every Redis call fails until then (frozen, or restarting).
    redis_down_until: u64,
    /// Per replica: cut from Redis until then.
    cut_until: Vec<u64>,
    /// Per replica, its main and flush connections: the next call on it fails.
    dropped: Vec<[bool; 2]>,
    /// Per replica: its next Redis call takes effect and loses its reply.
    lose_redis: Vec<bool>,
    pg_down_until: u64,
    /// The next PostgreSQL call takes effect and loses its reply.
    lose_pg: bool,
}

impl Faults {
    pub fn new(replicas: usize) -> Faults {
        Faults {
            redis_down_until: 0,
            cut_until: vec![0; replicas],
            dropped: vec![[false; 2]; replicas],
            lose_redis: vec![false; replicas],
            pg_down_until: 0,
            lose_pg: false,
        }
    }

    pub fn redis(&mut self, r: usize, conn: Conn, now: u64) -> Reach {
        if now < self.redis_down_until {
            return Reach::Down("redis down");
        }
        if now < self.cut_until[r] {
            return Reach::Down("cut from redis");
        }
        let dropped = match conn {
            Conn::Main => std::mem::take(&mut self.dropped[r][0]),
            Conn::Bulk => std::mem::take(&mut self.dropped[r][1]),
            Conn::Fresh => {
                self.dropped[r][0] = false;
                false
            }
        };
        if dropped {
            return Reach::Down("connection dropped");
        }
        match std::mem::take(&mut self.lose_redis[r]) {
            true => Reach::Lost,
            false => Reach::Up,
        }
    }

    pub fn pg(&mut self, now: u64) -> Reach {
        if now < self.pg_down_until {
            return Reach::Down("postgres down");
        }
        match std::mem::take(&mut self.lose_pg) {
            true => Reach::Lost,
            false => Reach::Up,
        }
    }

    /// Every fault over: what quiescence starts from. A connection Redis dropped stays
    /// dropped: its next call still fails, as it would.
    pub fn heal(&mut self) {
        let dropped = std::mem::take(&mut self.dropped);
        *self = Faults::new(self.cut_until.len());
        self.dropped = dropped;
    }
}

/// Strikes one fault, drawn from the schedule's seed, or heals one. A fault the promise does
/// not cover at this moment (see [`super::oracle`]) is skipped, and the trace says so.
pub(super) fn strike(w: &mut World) {
    let r = w.rng.index(w.replicas.len());
    let now = w.now;
    let long = w.rng.between(5, 120);
    match w.rng.below(11) {
        0 => {
            if !w.oracle.may_wipe() {
                w.note(None, || {
                    "fault: redis restart deferred (a crashed replica's update rests on it)".into()
                });
                return;
            }
            w.redis.wipe();
            w.wipes += 1;
            w.oracle.wiped();
            w.faults.redis_down_until = now + w.rng.between(0, 60);
            for (i, replica) in w.replicas.iter_mut().enumerate() {
                w.faults.dropped[i] = [true, true];
                replica.noticed = replica.life.is_none();
            }
            let until = w.faults.redis_down_until;
            w.note(None, || {
                format!("fault: redis restarts empty, down until t={until}")
            });
        }
        1 | 2 => {
            w.faults.redis_down_until = w.faults.redis_down_until.max(now + long);
            w.note(None, || {
                format!("fault: redis frozen until t={}", now + long)
            });
        }
        3 | 4 => {
            w.faults.cut_until[r] = now + long;
            w.note(Some(r), || {
                format!("fault: cut from redis until t={}", now + long)
            });
        }
        5 => {
            w.faults.dropped[r] = [true, true];
            w.note(Some(r), || "fault: redis drops its connections".into());
        }
        6 => {
            w.faults.lose_redis[r] = true;
            w.note(Some(r), || {
                "fault: its next redis reply will be lost".into()
            });
        }
        7 => {
            w.faults.pg_down_until = now + long;
            w.note(None, || {
                format!("fault: postgres down until t={}", now + long)
            });
        }
        8 => {
            w.faults.lose_pg = true;
            w.note(None, || {
                "fault: the next postgres reply will be lost".into()
            });
        }
        _ => match w.replicas[r].life.is_some() {
            true => replica::crash(w, r),
            false => replica::restart(w, r),
        },
    }
}
