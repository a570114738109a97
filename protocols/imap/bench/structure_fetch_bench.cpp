// CPU per message of scan_session on the structure path (UID FETCH of headers +
// BODYSTRUCTURE, then of the text parts; the synthetic message assembled), beside the
// whole-message path on the same corpus, and the MIME parse of both results.
//   imap_structure_bench [corpus_dir] [copies] [chunk_bytes] [rounds]
// The server side is recorded once from tests/unit/imap/mime_server.hpp (untimed), then
// replayed into fresh sessions: only the client's work is timed.
#include <algorithm>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "protocols/imap/scan_session.hpp"
#include "protocols/mime/message.hpp"
#include "tests/unit/imap/mime_server.hpp"

using namespace mscan::imap;

// CPU time of this thread: the machine is shared (2 cores, other builds), and the budget is
// CPU per message, so time spent preempted must not count.
double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

namespace {

session_options options(fetch_strategy f) {
  session_options o;
  o.username = "bench";
  o.secret = "bench";
  o.folders = {"INBOX"};
  o.batch_size = 200;
  o.fetch = f;
  return o;
}

// Runs a scan against the server and returns what the server sent, one segment per turn
// (a server never answers a command before it is sent).
std::vector<std::string> record(test::mime_server& server, fetch_strategy f) {
  scan_session s(options(f));
  std::vector<std::string> stream{server.greeting()};
  std::string to_server;
  s.on_bytes(stream[0]);
  while (!s.finished()) {
    while (auto out = s.poll())
      if (auto* w = std::get_if<write_bytes>(&*out)) to_server += w->data;
    if (s.awaiting_resume()) {
      s.resume();
      continue;
    }
    if (to_server.empty()) break;
    stream.push_back(server.answer(std::exchange(to_server, {})));
    s.on_bytes(stream.back());
  }
  return stream;
}

struct replay_result { double seconds; std::size_t messages; std::vector<std::string> raws; };

replay_result replay(const std::vector<std::string>& stream, fetch_strategy f, std::size_t chunk,
                     bool keep) {
  scan_session s(options(f));
  replay_result r{0, 0, {}};
  const double t0 = cpu_seconds();
  for (const auto& seg : stream)
  for (std::size_t off = 0; off < seg.size(); off += chunk) {
    s.on_bytes(std::string_view(seg).substr(off, chunk));
    for (;;) {
      while (auto out = s.poll())
        if (auto* m = std::get_if<message_fetched>(&*out)) {
          ++r.messages;
          if (keep) r.raws.push_back(std::move(m->raw));
        }
      if (!s.awaiting_resume()) break;
      s.resume();
    }
  }
  r.seconds = cpu_seconds() - t0;
  return r;
}

} // namespace

int main(int argc, char** argv) {
  const std::filesystem::path dir = argc > 1 ? argv[1] : MAILSCAN_CORPUS_DIR;
  const std::size_t copies = argc > 2 ? std::stoul(argv[2]) : 40;
  const std::size_t chunk = argc > 3 ? std::stoul(argv[3]) : 64 * 1024;
  std::vector<std::string> corpus;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".eml") continue;
    std::ifstream in(e.path(), std::ios::binary);
    corpus.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  if (corpus.empty()) {
    fmt::print(stderr, "imap_structure_bench: no .eml in {}\n", dir.string());
    return 2;
  }
  std::vector<std::string> msgs;
  for (std::size_t c = 0; c < copies; ++c) msgs.insert(msgs.end(), corpus.begin(), corpus.end());
  for (auto f : {fetch_strategy::whole_message, fetch_strategy::structure}) {
    test::mime_server server(msgs);
    const auto stream = record(server, f);
    std::size_t stream_bytes = 0;
    for (const auto& seg : stream) stream_bytes += seg.size();
    double best = 1e9;
    replay_result last{};
    const int rounds = argc > 4 ? std::stoi(argv[4]) : 5;  // more rounds: for profiling
    for (int i = 0; i < rounds; ++i) {
      last = replay(stream, f, chunk, false);
      best = std::min(best, last.seconds);
    }
    if (last.messages != msgs.size()) {
      fmt::print(stderr, "delivered {} of {}\n", last.messages, msgs.size());
      return 1;
    }
    const auto kept = replay(stream, f, chunk, true);
    double best_mime = 1e9;
    for (int i = 0; i < 3; ++i) {
      const double t0 = cpu_seconds();
      std::size_t sink = 0;
      for (const auto& raw : kept.raws) sink += mscan::mime::parse_message(raw).body_text.size();
      best_mime = std::min(best_mime, cpu_seconds() - t0);
      if (sink == 0) fmt::print("");
    }
    const double n = static_cast<double>(msgs.size());
    fmt::print("{}: {} messages, {:.1f} MiB from the server ({} B/message)\n",
               f == fetch_strategy::structure ? "structure (BODYSTRUCTURE + HEADER, then text parts)"
                                              : "whole message (BODY.PEEK[])",
               msgs.size(), static_cast<double>(stream_bytes) / (1024.0 * 1024.0),
               stream_bytes / msgs.size());
    fmt::print("  session:    {:6.2f} us CPU/message\n", best * 1e6 / n);
    fmt::print("  mime parse: {:6.2f} us CPU/message (of the delivered raw)\n", best_mime * 1e6 / n);
  }
  return 0;
}
