// libFuzzer target for the token endpoint's answer (parse_token_response) and the sealed
// secret decoder (open_sealed). The first two bytes pick the HTTP status; the rest is the
// body. Properties: never crashes; a success always has a token; a failure is classified and
// its detail is one printable line of bounded length.
#include "core/oauth_token.hpp"
#include "core/secret_box.hpp"

#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const int status = (data[0] << 8 | data[1]) % 600;
  const std::string_view body(reinterpret_cast<const char*>(data) + 2, size - 2);
  auto r = mscan::core::parse_token_response(status, body);
  if (r.ok && (r.access_token.empty() || r.failure != mscan::core::refresh_failure::none)) std::abort();
  if (!r.ok && r.failure == mscan::core::refresh_failure::none) std::abort();
  for (char c : r.detail)
    if (c == '\n' || c == '\r') std::abort();
  if (r.detail.size() > 400) std::abort();
  static const mscan::core::secret_key key{};
  (void)mscan::core::open_sealed(key, body, "fuzz");
  return 0;
}
