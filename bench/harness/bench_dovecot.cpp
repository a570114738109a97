// mailscan_bench_dovecot: a private real dovecot (tests/support/dovecot_fixture) holding the
// bench's wide corpus: users <prefix>0 … <prefix>{N-1}, each INBOX seeded with M generated
// messages of about B bytes (the simulator's deterministic content, so rules find the same
// references), INTERNALDATE = the message's Date (within the last ~11 days).
//   MSCAN_BENCH_PASSWORD=... mailscan_bench_dovecot --mailboxes N --messages M
//       [--message-bytes 13000] [--prefix u] [--seed 1] [--rawlog 1] --dir PARENT
// Prints "imap PORT", "root DIR", "pid PID", then "ready", and runs until SIGINT/SIGTERM.
// The password is never printed.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <string>

#include "bench/simulator/message_generator.hpp"
#include "tests/support/dovecot_fixture.hpp"

int main(int argc, char** argv) {
  using namespace mscan;
  std::size_t mailboxes = 0, messages = 0, bytes = 13000;
  std::uint64_t seed = 1;
  std::string prefix = "u", dir;
  bool rawlog = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--mailboxes") mailboxes = std::stoul(v);
    else if (k == "--messages") messages = std::stoul(v);
    else if (k == "--message-bytes") bytes = std::stoul(v);
    else if (k == "--prefix") prefix = v;
    else if (k == "--seed") seed = std::stoull(v);
    else if (k == "--dir") dir = v;
    else if (k == "--rawlog") rawlog = v == "1";
    else {
      std::cerr << "mailscan_bench_dovecot: unknown option " << k << "\n";
      return 2;
    }
  }
  const char* pw = std::getenv("MSCAN_BENCH_PASSWORD");
  if (mailboxes == 0 || dir.empty() || !pw) {
    std::cerr << "usage: MSCAN_BENCH_PASSWORD=... mailscan_bench_dovecot --mailboxes N --messages M "
                 "[--message-bytes B] [--prefix u] [--seed S] [--rawlog 1] --dir PARENT\n";
    return 2;
  }
  if (!test::dovecot_available()) {
    std::cerr << "mailscan_bench_dovecot: /usr/sbin/dovecot is not installed\n";
    return 1;
  }
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  try {
    test::dovecot_options opts;
    for (std::size_t i = 0; i < mailboxes; ++i) opts.users.push_back({prefix + std::to_string(i), pw});
    opts.parent_dir = dir;
    opts.max_connections = 4000;
    opts.rawlog = rawlog;  // every session's bytes under the user's home (what a client sends)
    test::dovecot_fixture dv(opts);
    sim::message_generator gen;
    gen.seed = seed;
    gen.messages = messages;
    gen.message_bytes = bytes;
    gen.base_time = sim::midnight_utc(static_cast<std::int64_t>(std::time(nullptr)));
    for (std::size_t u = 0; u < mailboxes; ++u)
      for (std::uint32_t uid = 1; uid <= messages; ++uid) {
        auto m = gen.generate(u, uid);
        dv.seed(prefix + std::to_string(u), "INBOX", m.full(), gen.initially_seen(u, uid),
                std::chrono::system_clock::from_time_t(static_cast<std::time_t>(m.date)));
      }
    std::cout << "imap " << dv.imap_port() << "\nroot " << dv.root().string() << "\npid " << dv.pid()
              << "\nready" << std::endl;
    int sig = 0;
    sigwait(&stop_signals, &sig);
  } catch (const std::exception& e) {
    std::cerr << "mailscan_bench_dovecot: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
