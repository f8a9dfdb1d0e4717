//! chronik-bench: Kafka load generator with kafka-producer-perf-test's flags,
//! usable against any Kafka-compatible bootstrap server.

mod client;
mod consume;
mod produce;
mod props;
mod report;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::consume::ConsumeArgs;
use crate::produce::ProduceArgs;

#[derive(Debug, Parser)]
#[command(
    name = "chronik-bench",
    version,
    about = "Kafka load generator (kafka-producer-perf-test compatible) for any bootstrap server",
    long_about = "Kafka load generator with kafka-producer-perf-test's flags, usable against any \
                  Kafka-compatible bootstrap server (Chronik, Apache Kafka, Tansu, ...).\n\n\
                  Without a subcommand the produce flags are accepted directly, as \
                  kafka-producer-perf-test takes them:\n  \
                  chronik-bench --topic t --num-records 1000000 --record-size 1024 \
                  --throughput -1 --producer-props bootstrap.servers=127.0.0.1:9092 acks=all",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    produce: Option<ProduceArgs>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Produce records and measure throughput and delivery latency.
    Produce(ProduceArgs),
    /// Consume records from the beginning of a topic and measure throughput.
    Consume(ConsumeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match (cli.command, cli.produce) {
        (Some(Command::Produce(args)), _) | (None, Some(args)) => produce::run(args),
        (Some(Command::Consume(args)), _) => consume::run(args),
        (None, None) => {
            let _ = Cli::command().print_help();
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
