// dovecot_dev: a private dovecot for demos and debugging, the same instance the integration
// tests get. Prints ports and paths, then runs until SIGINT/SIGTERM.
//   dovecot_dev [--user NAME:PASSWORD]... [--corpus USER[:FOLDER]]... [--pop3] [--keep]
//               [--dir PARENT]
// Passwords are never printed.
#include <csignal>
#include <cstring>
#include <iostream>
#include <string>

#include "tests/support/dovecot_fixture.hpp"

namespace {

int usage() {
  std::cerr << "usage: dovecot_dev [--user NAME:PASSWORD]... [--corpus USER[:FOLDER]]... "
               "[--pop3] [--keep] [--dir PARENT]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace mscan::test;
  dovecot_options opts;
  std::vector<std::pair<std::string, std::string>> corpus_targets;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : std::string(); };
    if (a == "--user") {
      std::string v = next();
      auto colon = v.find(':');
      if (colon == std::string::npos || colon == 0) return usage();
      opts.users.push_back({v.substr(0, colon), v.substr(colon + 1)});
    } else if (a == "--corpus") {
      std::string v = next();
      if (v.empty()) return usage();
      auto colon = v.find(':');
      corpus_targets.emplace_back(v.substr(0, colon),
                                  colon == std::string::npos ? "INBOX" : v.substr(colon + 1));
    } else if (a == "--pop3") {
      opts.pop3 = true;
    } else if (a == "--keep") {
      opts.keep_dir = true;
    } else if (a == "--dir") {
      opts.parent_dir = next();
      if (opts.parent_dir.empty()) return usage();
    } else {
      return usage();
    }
  }
  if (opts.users.empty()) opts.users.push_back({"alice", "secret"});
  if (!dovecot_available()) {
    std::cerr << "dovecot_dev: /usr/sbin/dovecot is not installed\n";
    return 1;
  }
  // Block the stop signals before any thread exists; sigwait() below receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  try {
    dovecot_fixture dv(opts);
    auto corpus = corpus_files();
    for (const auto& [user, folder] : corpus_targets) dv.seed_files(user, folder, corpus);
    std::cout << "root     " << dv.root().string() << "\n"
              << "config   " << dv.config_file().string() << "\n"
              << "pid      " << dv.pid() << "\n"
              << "imap     127.0.0.1:" << dv.imap_port() << " (plain + STARTTLS)\n"
              << "imaps    127.0.0.1:" << dv.imaps_port() << "\n";
    if (opts.pop3)
      std::cout << "pop3     127.0.0.1:" << dv.pop3_port() << "\n"
                << "pop3s    127.0.0.1:" << dv.pop3s_port() << "\n";
    std::cout << "ca_file  " << dv.ca_file() << "\n"
              << "wrong_ca " << dv.wrong_ca_file() << "\n"
              << "users   ";
    for (const auto& u : opts.users) std::cout << " " << u.name;
    std::cout << "\nready (Ctrl-C stops it)" << std::endl;
    int sig = 0;
    sigwait(&stop_signals, &sig);
    std::cout << "stopping" << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "dovecot_dev: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
