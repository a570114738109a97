#pragma once
// Small formatting helpers every layer needs (no dependencies): wall-clock seconds, UTC
// timestamps in the shapes the JSON output, the mail headers and the logs use, and ASCII
// upper-casing for protocol keywords.
#include <chrono>
#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>

namespace mscan {

inline std::int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
    .count();
}

// strftime of unix seconds in UTC, e.g. "%Y-%m-%dT%H:%M:%SZ".
inline std::string utc_time(std::int64_t t, const char* format) {
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  auto n = std::strftime(buf, sizeof buf, format, &tm);
  return std::string(buf, n);
}

inline std::string iso8601_utc(std::int64_t t) { return utc_time(t, "%Y-%m-%dT%H:%M:%SZ"); }

inline std::string ascii_upper(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return out;
}

} // namespace mscan
