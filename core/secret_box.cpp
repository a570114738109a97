// AES-256-GCM with a random 96-bit nonce per seal (NIST SP 800-38D's recommended size); the
// number of seals per key stays tiny (one per stored token), far from the nonce-reuse bound.
#include "core/secret_box.hpp"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>

namespace mscan::core {

namespace {

constexpr std::size_t nonce_len = 12, tag_len = 16;

using ctx_ptr = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

} // namespace

expected<secret_key, std::string> parse_secret_key(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  if (text.size() != 64)
    return unexpected{fmt::format("expected 64 hex digits (32 bytes), found {} characters", text.size())};
  secret_key k;
  for (std::size_t i = 0; i < 32; ++i) {
    int hi = hex_value(text[2 * i]), lo = hex_value(text[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return unexpected{std::string("expected 64 hex digits (32 bytes), found a non-hex character")};
    k.bytes[i] = static_cast<unsigned char>(hi * 16 + lo);
  }
  return k;
}

expected<secret_key, std::string> load_secret_key(const std::filesystem::path& file, const std::string& env) {
  if (!file.empty()) {
    std::ifstream in(file, std::ios::binary);
    if (!in)
      return unexpected{fmt::format("secrets key file {} cannot be read", file.string())};
    std::ostringstream ss;
    ss << in.rdbuf();
    auto k = parse_secret_key(ss.str());
    if (!k)
      return unexpected{fmt::format("secrets key file {}: {}", file.string(), k.error())};
    return k;
  }
  if (env.empty())
    return unexpected{std::string("no secrets key configured (set [engine] secrets_key_file or secrets_key_env)")};
  const char* v = std::getenv(env.c_str());
  if (!v || !*v)
    return unexpected{fmt::format("environment variable {} (the secrets key) is not set", env)};
  auto k = parse_secret_key(v);
  if (!k)
    return unexpected{fmt::format("environment variable {}: {}", env, k.error())};
  return k;
}

std::string generate_secret_key_hex() {
  std::array<unsigned char, 32> b{};
  if (RAND_bytes(b.data(), static_cast<int>(b.size())) != 1)
    return {};
  std::string out;
  for (auto c : b)
    out += fmt::format("{:02x}", c);
  OPENSSL_cleanse(b.data(), b.size());
  return out;
}

bool is_sealed(std::string_view s) { return s.starts_with(sealed_prefix); }

std::string base64_encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

expected<std::string, std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0)
    return unexpected{std::string("invalid base64 length")};
  std::string out(3 * (text.size() / 4), '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (n < 0)
    return unexpected{std::string("invalid base64")};
  // EVP_DecodeBlock counts the padding as zero bytes.
  std::size_t pad = 0;
  if (!text.empty() && text.back() == '=') ++pad;
  if (text.size() > 1 && text[text.size() - 2] == '=') ++pad;
  out.resize(static_cast<std::size_t>(n) - pad);
  return out;
}

std::string seal(const secret_key& key, std::string_view plaintext, std::string_view aad) {
  std::string blob(nonce_len + plaintext.size() + tag_len, '\0');
  auto* p = reinterpret_cast<unsigned char*>(blob.data());
  if (RAND_bytes(p, nonce_len) != 1)
    return {};
  ctx_ptr ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
  int len = 0;
  bool ok = ctx && EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.bytes.data(), p) == 1 &&
            EVP_EncryptUpdate(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(aad.data()),
                              static_cast<int>(aad.size())) == 1 &&
            EVP_EncryptUpdate(ctx.get(), p + nonce_len, &len, reinterpret_cast<const unsigned char*>(plaintext.data()),
                              static_cast<int>(plaintext.size())) == 1 &&
            EVP_EncryptFinal_ex(ctx.get(), p + nonce_len + len, &len) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, tag_len, p + nonce_len + plaintext.size()) == 1;
  if (!ok)
    return {};
  return std::string(sealed_prefix) + base64_encode(blob);
}

expected<std::string, std::string> open_sealed(const secret_key& key, std::string_view sealed, std::string_view aad) {
  if (!is_sealed(sealed))
    return unexpected{std::string("not a sealed value (expected msk1:...)")};
  auto blob = base64_decode(sealed.substr(sealed_prefix.size()));
  if (!blob || blob->size() < nonce_len + tag_len)
    return unexpected{std::string("sealed value is corrupted (bad encoding)")};
  const auto* p = reinterpret_cast<const unsigned char*>(blob->data());
  const std::size_t ct_len = blob->size() - nonce_len - tag_len;
  std::string out(ct_len, '\0');
  ctx_ptr ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
  int len = 0;
  std::array<unsigned char, tag_len> tag{};
  std::copy(p + nonce_len + ct_len, p + blob->size(), tag.begin());
  bool ok = ctx && EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.bytes.data(), p) == 1 &&
            EVP_DecryptUpdate(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(aad.data()),
                              static_cast<int>(aad.size())) == 1 &&
            EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len, p + nonce_len,
                              static_cast<int>(ct_len)) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, tag_len, tag.data()) == 1 &&
            EVP_DecryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(out.data()) + len, &len) == 1;
  if (!ok) {
    OPENSSL_cleanse(out.data(), out.size());
    return unexpected{std::string("wrong key or corrupted data (authentication tag mismatch)")};
  }
  return out;
}

} // namespace mscan::core
