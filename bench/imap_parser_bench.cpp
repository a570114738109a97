// Parsing throughput of response_parser on a FETCH stream built from the real corpus,
// beside memcpy of the same bytes in the same run (the floor any parser pays to move data).
//   imap_parser_bench [corpus_dir] [min_stream_mb] [chunk_bytes]
#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "protocols/imap/response_parser.hpp"
#include "protocols/imap/scan_session.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using mscan::imap::feed_status;

std::vector<std::string> load_corpus(const std::filesystem::path& dir) {
  std::vector<std::string> out;
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    out.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  return out;
}

// `* n FETCH (UID n BODY[] {len}\r\n<message>)\r\n`, repeated until min_bytes.
std::string build_stream(const std::vector<std::string>& msgs, std::size_t min_bytes, bool full,
                         std::size_t& count) {
  std::string s;
  s.reserve(min_bytes + (1u << 20));
  count = 0;
  while (s.size() < min_bytes) {
    for (const auto& m : msgs) {
      ++count;
      if (full)
        s += fmt::format("* {0} FETCH (UID {0} FLAGS (\\Seen $Forwarded) INTERNALDATE "
                         "\"17-Jul-1996 02:44:25 -0700\" RFC822.SIZE {1} BODY[] {{{1}}}\r\n",
                         count, m.size());
      else
        s += fmt::format("* {0} FETCH (UID {0} BODY[] {{{1}}}\r\n", count, m.size());
      s += m;
      s += ")\r\n";
    }
  }
  return s;
}

struct result { double seconds; std::size_t responses; std::size_t body_bytes; };

result parse_stream(const std::string& stream, std::size_t chunk) {
  mscan::imap::response_parser p;
  std::size_t responses = 0, body = 0;
  const auto t0 = clock_type::now();
  for (std::size_t off = 0; off < stream.size(); off += chunk) {
    std::string_view c(stream.data() + off, std::min(chunk, stream.size() - off));
    while (!c.empty()) {
      const auto r = p.feed(c);
      c.remove_prefix(r.consumed);
      if (r.status == feed_status::failed) {
        fmt::print(stderr, "parse error: {} {}\n", p.error().message, p.error().excerpt);
        std::exit(1);
      }
      if (r.status == feed_status::ready) {
        auto resp = p.take();
        if (auto* f = std::get_if<mscan::imap::fetch_data>(&resp))
          if (auto* s = f->find_section(""); s && s->data) body += s->data->size();
        ++responses;
      }
    }
  }
  return {std::chrono::duration<double>(clock_type::now() - t0).count(), responses, body};
}

double memcpy_stream(const std::string& stream, std::size_t chunk) {
  // Copy chunk by chunk into a reused buffer: what the transport's read does at the least.
  std::string dst(chunk, '\0');
  volatile char sink = 0;
  const auto t0 = clock_type::now();
  for (std::size_t off = 0; off < stream.size(); off += chunk) {
    const std::size_t n = std::min(chunk, stream.size() - off);
    std::memcpy(dst.data(), stream.data() + off, n);
    sink = sink + dst[n / 2];
  }
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// scan_session end to end on a scripted server: the CPU the engine spends per message
// between socket bytes and message_fetched (parser + state machine + output queue).
struct session_result { double seconds; std::size_t messages; std::size_t bytes; };

session_result run_session(const std::vector<std::string>& msgs, std::size_t min_bytes,
                           std::size_t chunk) {
  using namespace mscan::imap;
  // One segment per server turn: greeting+EXAMINE+SEARCH, then one per FETCH batch.
  std::vector<std::string> segments;
  std::size_t n = 0, total = 0;
  while (total < min_bytes)
    for (const auto& m : msgs) { ++n; total += m.size(); }
  const std::size_t batch = 200;
  std::string first = fmt::format("* PREAUTH [CAPABILITY IMAP4rev1] hi\r\n* {0} EXISTS\r\n"
                                  "* OK [UIDVALIDITY 1] x\r\n* OK [UIDNEXT {1}] x\r\na1 OK\r\n* SEARCH",
                                  n, n + 1);
  for (std::size_t u = 1; u <= n; ++u) first += fmt::format(" {}", u);
  first += "\r\na2 OK\r\n* SEARCH\r\na3 OK\r\n";
  segments.push_back(std::move(first));
  std::size_t tag = 4;
  for (std::size_t b = 0; b * batch < n; ++b, ++tag) {
    std::string seg;
    for (std::size_t u = b * batch + 1; u <= std::min(n, (b + 1) * batch); ++u) {
      const auto& m = msgs[(u - 1) % msgs.size()];
      seg += fmt::format("* {0} FETCH (UID {0} FLAGS (\\Seen) INTERNALDATE \"17-Jul-1996 02:44:25 "
                         "-0700\" RFC822.SIZE {1} BODY[] {{{1}}}\r\n", u, m.size());
      seg += m;
      seg += ")\r\n";
    }
    seg += fmt::format("a{} OK Fetch completed.\r\n", tag);
    segments.push_back(std::move(seg));
  }
  session_options o;
  o.fetch = fetch_strategy::whole_message;  // the recorded transcript answers whole-message fetches
  o.username = "bench";
  o.secret = "bench";
  o.folders = {"INBOX"};
  o.batch_size = batch;
  scan_session s(o);
  std::size_t got = 0, bytes = 0;
  bool failed = false;
  const auto t0 = clock_type::now();
  for (const auto& seg : segments) {
    for (std::size_t off = 0; off < seg.size(); off += chunk) {
      s.on_bytes(std::string_view(seg).substr(off, chunk));
      while (auto out = s.poll()) {
        if (auto* m = std::get_if<message_fetched>(&*out)) {
          ++got;
          bytes += m->raw.size();
        } else if (std::holds_alternative<scan_failed>(*out)) {
          failed = true;
          fmt::print(stderr, "session failed: {}\n", std::get<scan_failed>(*out).err.detail);
        }
      }
    }
    if (s.awaiting_resume()) s.resume();
    while (s.poll()) {}
  }
  const double secs = std::chrono::duration<double>(clock_type::now() - t0).count();
  if (failed || got != n) {
    fmt::print(stderr, "session delivered {} of {} messages\n", got, n);
    std::exit(1);
  }
  return {secs, got, bytes};
}

} // namespace

int main(int argc, char** argv) {
  const std::filesystem::path dir = argc > 1 ? argv[1] : MAILSCAN_CORPUS_DIR;
  const std::size_t min_mb = argc > 2 ? std::stoul(argv[2]) : 64;
  const std::size_t chunk = argc > 3 ? std::stoul(argv[3]) : 64 * 1024;
  std::vector<std::string> msgs;
  try {
    msgs = load_corpus(dir);
  } catch (const std::exception& e) {
    fmt::print(stderr, "imap_parser_bench: cannot read corpus {}: {}\n", dir.string(), e.what());
    return 2;
  }
  if (msgs.empty()) {
    fmt::print(stderr, "imap_parser_bench: no messages in {}\n", dir.string());
    return 2;
  }
  for (bool full : {false, true}) {
    std::size_t count = 0;
    const std::string stream = build_stream(msgs, min_mb << 20, full, count);
    const double mb = static_cast<double>(stream.size()) / (1024.0 * 1024.0);
    // Best of 5 for each, interleaved so both see the same machine state.
    double best_parse = 1e9, best_copy = 1e9;
    result last{};
    for (int i = 0; i < 5; ++i) {
      last = parse_stream(stream, chunk);
      best_parse = std::min(best_parse, last.seconds);
      best_copy = std::min(best_copy, memcpy_stream(stream, chunk));
    }
    if (last.responses != count) {
      fmt::print(stderr, "expected {} responses, got {}\n", count, last.responses);
      return 1;
    }
    fmt::print("stream: {} ({} corpus messages, {} FETCH responses, {:.1f} MiB, {} B chunks)\n",
               full ? "UID FLAGS INTERNALDATE RFC822.SIZE BODY[]" : "UID BODY[]", msgs.size(),
               count, mb, chunk);
    fmt::print("  parser: {:8.1f} MiB/s  {:6.2f} us/message\n", mb / best_parse,
               best_parse * 1e6 / static_cast<double>(count));
    fmt::print("  memcpy: {:8.1f} MiB/s\n", mb / best_copy);
    fmt::print("  ratio parser/memcpy: {:.3f}\n", best_copy / best_parse);
  }
  double best = 1e9;
  session_result sr{};
  for (int i = 0; i < 3; ++i) {
    sr = run_session(msgs, min_mb << 20, chunk);
    best = std::min(best, sr.seconds);
  }
  const double smb = static_cast<double>(sr.bytes) / (1024.0 * 1024.0);
  fmt::print("scan_session end to end (EXAMINE, SEARCH, UID FETCH batches of 200): {} messages, "
             "{:.1f} MiB\n", sr.messages, smb);
  fmt::print("  session: {:8.1f} MiB/s  {:6.2f} us/message\n", smb / best,
             best * 1e6 / static_cast<double>(sr.messages));
  return 0;
}
