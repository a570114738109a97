// matching_bench: messages/s through the whole matcher step (parse_message + link_message:
// directory, reference numbers, rules and actions) with 1,000,000 contacts, 100,000
// accounts, 10,000 reference patterns (+10,000 items) and 1,000 rules, beside parse_message
// alone over the same messages in the same run. The directory is written as a CSV and loaded
// through the real config loader, so the load time printed is what an operator waits for.
//
// usage: matching_bench [contacts] [accounts] [patterns] [rules] [seconds_per_phase]
#include "core/config.hpp"
#include "core/directory.hpp"
#include "core/rules.hpp"
#include "protocols/mime/message.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <unistd.h>
#include <vector>

namespace {

using namespace mscan;
using clock_type = std::chrono::steady_clock;

double since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

} // namespace

int main(int argc, char** argv) {
  const std::size_t contacts = argc > 1 ? std::stoul(argv[1]) : 1'000'000;
  const std::size_t accounts = argc > 2 ? std::stoul(argv[2]) : 100'000;
  const std::size_t patterns = argc > 3 ? std::stoul(argv[3]) : 10'000;
  const std::size_t rules = argc > 4 ? std::stoul(argv[4]) : 1'000;
  const double seconds = argc > 5 ? std::stod(argv[5]) : 3.0;

  char tmpl[] = "/tmp/matching_benchXXXXXX";
  if (!mkdtemp(tmpl)) {
    std::perror("mkdtemp");
    return 1;
  }
  std::filesystem::path dir = tmpl;
  {
    std::ofstream o(dir / "directory.csv");
    o << "kind,name,domains,email,account,reference\n";
    for (std::size_t a = 0; a < accounts; ++a)
      o << fmt::format("account,Account {0},acct{0}.example,,,\n", a);
    for (std::size_t c = 0; c < contacts; ++c)
      o << fmt::format("contact,Contact {0},,c{0}@acct{1}.example,Account {1},\n", c, c % accounts);
    // 10,000 items: "K<p>-<n>" for pattern p.
    for (std::size_t p = 0; p < patterns; ++p)
      o << fmt::format("ticket,,,,,K{}-{}\n", p, 1000 + p);
  }
  {
    std::ofstream o(dir / "mailscan.toml");
    o << "[engine]\ninternal_domains = [\"corp.example\"]\ndirectory_file = \"directory.csv\"\n"
         "[[mailbox]]\nuser = \"alice\"\naddress = \"alice@corp.example\"\n";
    for (std::size_t p = 0; p < patterns; ++p)
      o << fmt::format("[[item_pattern]]\nkind = \"ticket\"\nregex = \"K{}-\\\\d+\"\n", p);
    for (std::size_t r = 0; r < rules; ++r)
      o << fmt::format("[[rule]]\nname = \"rule {0}\"\nconditions = [ {{ field = \"subject\", op = \"contains\", "
                       "value = \"topic{0}\" }}, {{ field = \"from\", op = \"ends_with\", value = \"@acct{1}.example\" }} ]\n"
                       "actions = [ {{ type = \"create_contact\" }}, {{ type = \"create_or_update_ticket\", "
                       "ticket_regex = \"TT\\\\d+\" }}, {{ type = \"move\", folder = \"Done\" }} ]\n",
                       r, r % accounts);
  }
  auto t0 = clock_type::now();
  auto cfg = core::load_config(dir / "mailscan.toml");
  double load_s = since(t0);
  if (!cfg) {
    std::fprintf(stderr, "config: %s\n", cfg.error().message.c_str());
    std::filesystem::remove_all(dir);
    return 1;
  }
  t0 = clock_type::now();
  auto directory = std::make_shared<const core::directory>(cfg.value());
  double dir_s = since(t0);
  t0 = clock_type::now();
  auto linker = core::build_linker(cfg.value(), directory);
  double compile_s = since(t0);
  std::filesystem::remove_all(dir);
  if (!linker) {
    std::fprintf(stderr, "rules: %s\n", linker.error().message.c_str());
    return 1;
  }

  // 2,000 messages: known and unknown senders, Cc'd contacts, references known and unknown,
  // subjects that fire a rule for about one message in ten.
  std::mt19937_64 rng(42);
  std::vector<std::string> raw;
  for (std::size_t i = 0; i < 2000; ++i) {
    auto c = rng() % contacts;
    auto sender = i % 5 == 0 ? fmt::format("stranger{}@acct{}.example", i, rng() % accounts)
                             : fmt::format("c{}@acct{}.example", c, c % accounts);
    auto r = rng() % rules;
    auto subject = fmt::format("{} K{}-{} and K{}-9{} about topic{}", i % 3 == 0 ? "Re: [TT12]" : "Hello",
                               rng() % patterns, 1000 + rng() % patterns, rng() % patterns, i,
                               i % 10 == 0 ? r : rules + i);
    if (i % 10 == 0)
      sender = fmt::format("x{}@acct{}.example", i, r % accounts);
    raw.push_back(fmt::format("From: Someone <{}>\r\nTo: alice@corp.example\r\nCc: c{}@acct{}.example\r\n"
                              "Subject: {}\r\nMessage-ID: <m{}@bench>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
                              "Content-Type: text/plain\r\n\r\nHello, some text.\r\n\r\n> quoted\r\n",
                              sender, c, c % accounts, subject, i));
  }
  auto phase = [&](bool link) {
    std::size_t n = 0, links = 0;
    auto t = clock_type::now();
    double s = 0;
    do {
      for (auto& m : raw) {
        auto parsed = mime::parse_message(m);
        if (link) {
          core::fetch_context ctx{"alice", "INBOX", 1, static_cast<std::uint32_t>(n), m.size(), 0};
          auto rec = core::link_message(linker.value(), parsed, ctx);
          links += rec.reasons.size();
        } else {
          links += parsed.subject.size();
        }
        ++n;
      }
      s = since(t);
    } while (s < seconds);
    return std::make_pair(n / s, links);
  };
  auto [parse_rate, x1] = phase(false);
  auto [match_rate, x2] = phase(true);
  std::printf("directory: %zu contacts, %zu accounts, %zu items; %zu reference patterns; %zu rules\n",
              cfg.value().contacts.size(), cfg.value().accounts.size(), cfg.value().items.size(),
              cfg.value().item_patterns.size(), cfg.value().rules.size());
  std::printf("load config + directory CSV: %.2f s; build directory index: %.2f s; compile rules + patterns: %.2f s\n",
              load_s, dir_s, compile_s);
  std::printf("parse only:          %10.0f msg/s\n", parse_rate);
  std::printf("parse + link_message:%10.0f msg/s  (%.1f us/msg for linking)\n", match_rate,
              1e6 / match_rate - 1e6 / parse_rate);
  std::printf("(checksum %zu %zu)\n", x1, x2);
  return 0;
}
