// mime_parse_bench: parse_message over the real-world corpus, beside a memcpy of the same
// bytes in the same run (the memcpy figure shows what this machine does at the moment).
//
// usage: mime_parse_bench [corpus_dir] [seconds_per_phase]
#include "protocols/mime/message.hpp"

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

// CPU time of this thread: stable when other processes share the two cores.
double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) / 1e9;
}

struct result {
  double seconds = 0, cpu_seconds = 0;
  std::size_t messages = 0, bytes = 0;
};

template <class F>
result run_for(const std::vector<std::string>& corpus, double seconds, F&& per_message) {
  result r;
  auto t0 = clock_type::now();
  double c0 = thread_cpu_seconds();
  do {
    for (const auto& m : corpus) {
      per_message(m);
      ++r.messages;
      r.bytes += m.size();
    }
    r.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
  } while (r.seconds < seconds);
  r.cpu_seconds = thread_cpu_seconds() - c0;
  return r;
}

} // namespace

int main(int argc, char** argv) {
  std::string dir = argc > 1 ? argv[1] : MAILSCAN_CORPUS_DIR;
  double seconds = argc > 2 ? std::atof(argv[2]) : 2.0;
  std::vector<std::string> corpus;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.path().extension() != ".eml") continue;
    std::ifstream in(e.path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    corpus.push_back(ss.str());
  }
  if (ec || corpus.empty()) {
    std::fprintf(stderr, "mime_parse_bench: no .eml files in %s\n", dir.c_str());
    return 2;
  }
  std::size_t total = 0, largest = 0;
  for (const auto& m : corpus) {
    total += m.size();
    largest = std::max(largest, m.size());
  }
  std::vector<char> buffer(largest);
  volatile std::size_t sink = 0;

  // warm-up (iconv descriptors, page faults)
  for (const auto& m : corpus) sink = sink + mscan::mime::parse_message(m).body_text.size();

  result copy = run_for(corpus, seconds, [&](const std::string& m) {
    std::memcpy(buffer.data(), m.data(), m.size());
    sink = sink + static_cast<unsigned char>(buffer[m.size() / 2]);
  });
  result parse = run_for(corpus, seconds, [&](const std::string& m) {
    auto msg = mscan::mime::parse_message(m);
    sink = sink + msg.body_text.size() + msg.from.size();
  });

  // The header path: what the engine parses when it fetches only BODY.PEEK[HEADER].
  std::vector<std::string> headers;
  for (const auto& m : corpus) {
    std::size_t end = m.find("\r\n\r\n");
    std::size_t lf = m.find("\n\n");
    std::size_t cut = std::min(end == std::string::npos ? m.size() : end + 4, lf == std::string::npos ? m.size() : lf + 2);
    headers.push_back(m.substr(0, cut));
  }
  result head = run_for(headers, seconds, [&](const std::string& m) {
    auto msg = mscan::mime::parse_message(m);
    sink = sink + msg.subject.size() + msg.from.size();
  });

  auto mbps = [](const result& r, double t) { return double(r.bytes) / t / 1e6; };
  auto mps = [](const result& r, double t) { return double(r.messages) / t; };
  std::printf("corpus: %zu messages, %zu bytes (mean %.1f KB)\n", corpus.size(), total,
              double(total) / double(corpus.size()) / 1e3);
  std::printf("%-14s %12s %10s %12s %10s\n", "", "wall msg/s", "wall MB/s", "cpu msg/s", "cpu MB/s");
  for (auto [name, r] : {std::pair{"memcpy", copy}, std::pair{"parse_message", parse},
                         std::pair{"headers only", head}})
    std::printf("%-14s %12.0f %10.1f %12.0f %10.1f\n", name, mps(r, r.seconds), mbps(r, r.seconds),
                mps(r, r.cpu_seconds), mbps(r, r.cpu_seconds));
  std::printf("parse_message: %.2f us CPU per message; parse/memcpy throughput ratio %.4f\n",
              1e6 / mps(parse, parse.cpu_seconds), mbps(parse, parse.cpu_seconds) / mbps(copy, copy.cpu_seconds));
  std::printf("headers only:  %.2f us CPU per message\n", 1e6 / mps(head, head.cpu_seconds));
  return sink == 42 ? 1 : 0;
}
