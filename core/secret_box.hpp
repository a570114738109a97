#pragma once
// Secrets at rest (OAuth refresh tokens, client secrets): AES-256-GCM via OpenSSL EVP.
//
// Sealed form: "msk1:" + base64(nonce[12] || ciphertext || tag[16]). The associated data
// names what the secret is for (e.g. "oauth_credential:contoso"), so a sealed value copied to
// another credential does not open. The key (32 bytes) is written as 64 hex digits in a file
// or an environment variable named by [engine] secrets_key_file / secrets_key_env.
#include "common/expected.hpp"

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace mscan::core {

struct secret_key {
  std::array<unsigned char, 32> bytes{};
};

inline constexpr std::string_view sealed_prefix = "msk1:";

// 64 hex digits (surrounding white space ignored) -> key; the error says what is wrong,
// never the key.
expected<secret_key, std::string> parse_secret_key(std::string_view text);
// Reads the key from `file` (when not empty) or else the environment variable `env`.
expected<secret_key, std::string> load_secret_key(const std::filesystem::path& file, const std::string& env);
// A fresh random key as 64 hex digits (`mailscan oauth new-key`).
std::string generate_secret_key_hex();

bool is_sealed(std::string_view s);
std::string seal(const secret_key& key, std::string_view plaintext, std::string_view aad);
// Error: "not a sealed value", or "wrong key or corrupted data" (the GCM tag did not verify).
expected<std::string, std::string> open_sealed(const secret_key& key, std::string_view sealed, std::string_view aad);

std::string base64_encode(std::string_view bytes);
expected<std::string, std::string> base64_decode(std::string_view text);

} // namespace mscan::core
