//! Read models on Redis: a session cache with a TTL and a leaderboard.
//!
//! ```text
//! arcade                       # the demo: players on the in-memory event store, read models on Redis
//! arcade play FIRST COUNT      # on PostgreSQL: players FIRST..FIRST+COUNT start, score 3 times, and
//!                              # the even ones end their session; one line per player
//! arcade project               # keep both read models on Redis from PostgreSQL's log, until stopped
//! arcade top N                 # the leaderboard's first N, and the games played
//! arcade session PLAYER        # a player's cached session
//! ```
//!
//! Redis is at `REDIS_URL`; the read models' keys are under `ARCADE_PREFIX` (`arcade` by
//! default; the demo takes a fresh one and removes its keys at the end). `play` and `project`
//! keep the events in PostgreSQL at `DATABASE_URL`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use arcade::{
    EndSession, GAMES, Leaderboard, POINTS, Player, Score, Session, Sessions, StartSession,
    read_models, session_key,
};
use composable::host::App;
use composable::projection::{ReadStore, Scope};
use composable::{AggregateRunner, BoxError, EventStore, InMemoryEventStore};
use composable_postgres::PostgresEventStore;
use composable_redis::RedisReadStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn env(name: &str) -> Result<String, BoxError> {
    std::env::var(name).ok().filter(|value| !value.is_empty()).ok_or_else(|| {
        format!(
            "{name} is not set: start Redis and PostgreSQL with `source scripts/lib/common.sh && \
             source scripts/lib/redis.sh && source scripts/lib/postgres.sh && ensure_redis && \
             redis_start && pg_start`, which export REDIS_URL and DATABASE_URL"
        )
        .into()
    })
}

async fn events() -> Result<PostgresEventStore, BoxError> {
    let store = PostgresEventStore::connect(&env("DATABASE_URL")?).await?;
    store.migrate().await?;
    Ok(store)
}

async fn run(args: &[String]) -> Result<(), BoxError> {
    let redis = env("REDIS_URL")?;
    let prefix = std::env::var("ARCADE_PREFIX").unwrap_or_else(|_| "arcade".into());
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] => demo(&redis).await,
        ["play", first, count] => {
            let (first, count): (u64, u64) = (first.parse()?, count.parse()?);
            let players = AggregateRunner::<Player, _>::new(events().await?, ());
            for id in first..first + count {
                play(&players, id).await?;
                println!("played {id}");
            }
            Ok(())
        }
        ["project"] => {
            let (sessions, board) = read_models(&redis, &prefix).await?;
            let store = events().await?;
            let players = Arc::new(AggregateRunner::<Player, _>::new(store.clone(), ()));
            let running = App::in_process("arcade", store)
                .aggregate(&players)
                .projection(Sessions, sessions)
                .projection(Leaderboard, board)
                .build()?
                .start();
            println!("projecting");
            tokio::select! {
                failed = running.failure() => {
                    return Err(format!("{} failed: {:?}", failed.name, failed.health.state).into());
                }
                stop = tokio::signal::ctrl_c() => stop?,
            }
            Ok(running.stop().await?)
        }
        ["top", n] => {
            let (_, board) = read_models(&redis, &prefix).await?;
            print_top(&board, n.parse()?).await
        }
        ["session", player] => {
            let (sessions, _) = read_models(&redis, &prefix).await?;
            print_session(&sessions, player).await
        }
        _ => Err("usage: arcade [play FIRST COUNT | project | top N | session PLAYER]".into()),
    }
}

/// Player `id`: a session on a device, three games, and — for even ids — the end of it.
async fn play<S: EventStore>(
    players: &AggregateRunner<Player, S>,
    id: u64,
) -> Result<(), BoxError> {
    let player = format!("p{id}");
    players.execute(&player, StartSession { device: format!("device-{}", id % 3) }).await?;
    for game in 1..=3 {
        players.execute(&player, Score { points: u32::try_from((id * 7 + game) % 100)? }).await?;
    }
    if id.is_multiple_of(2) {
        players.execute(&player, EndSession).await?;
    }
    Ok(())
}

async fn demo(redis: &str) -> Result<(), BoxError> {
    let prefix = format!("arcade-demo-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let (sessions, board) = read_models(redis, &prefix).await?;
    let store = InMemoryEventStore::new();
    let players = Arc::new(AggregateRunner::<Player, _>::new(store.clone(), ()));
    let running = App::in_process("arcade", store)
        .aggregate(&players)
        .projection(Sessions, sessions.clone())
        .projection(Leaderboard, board.clone())
        .build()?
        .start();

    players.execute("ada", StartSession { device: "phone".into() }).await?;
    players.execute("ada", Score { points: 120 }).await?;
    players.execute("ada", Score { points: 80 }).await?;
    players.execute("bob", StartSession { device: "laptop".into() }).await?;
    players.execute("bob", Score { points: 300 }).await?;
    players.execute("bob", EndSession).await?;
    players.execute("cy", StartSession { device: "tablet".into() }).await?;
    let last = players.execute("cy", Score { points: 50 }).await?;
    let token = last.token.ok_or("the last command appended nothing")?;
    for name in ["projection.arcade_sessions", "projection.arcade_leaderboard"] {
        let service = running.service(name).ok_or("the projection is not hosted")?;
        service.reached(token, Duration::from_secs(10)).await?;
    }

    print_top(&board, 3).await?;
    for player in ["ada", "bob", "cy"] {
        print_session(&sessions, player).await?;
    }
    running.stop().await?;
    // The demo's keys go.
    sessions.clear(Scope::of::<Sessions>()).await?;
    board.clear(Scope::of::<Leaderboard>()).await?;
    println!("(the demo's keys under `{prefix}-*` are removed)");
    Ok(())
}

async fn print_top(board: &RedisReadStore, n: usize) -> Result<(), BoxError> {
    println!("leaderboard ({} games):", board.counter(GAMES).await?);
    for (rank, (player, points)) in (1..).zip(board.top(POINTS, n).await?) {
        println!("  {rank}. {player} {points}");
    }
    Ok(())
}

async fn print_session(sessions: &RedisReadStore, player: &str) -> Result<(), BoxError> {
    let key = session_key(player);
    match sessions.get::<Session>(&key).await? {
        Some(session) => {
            let left = sessions.ttl(&key).await?.unwrap_or_default();
            println!(
                "session of {player}: on {} since {}, cached for {} more min",
                session.device,
                session.started_at.format("%H:%M:%S"),
                left.as_secs().div_ceil(60)
            );
        }
        None => println!("session of {player}: none"),
    }
    Ok(())
}
