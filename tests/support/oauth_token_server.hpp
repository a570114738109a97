#pragma once
// A local OAuth2 authorisation server for tests (Boost.Beast, 127.0.0.1 only): the token
// endpoint (client_credentials and refresh_token grants, short-lived access tokens, knobs
// for revocation, server-side expiry and transient failures, counters) and an RFC 7662
// introspection endpoint that dovecot's `oauth2` passdb asks whether a token is valid.
//
// One listener speaks TLS with the dovecot fixture's server certificate (use_certificate) (its CA is the
// fixture's ca_file(), so mailscan verifies the chain and the IP SAN 127.0.0.1); a second
// one speaks plain HTTP for dovecot's introspection requests. Every response closes its
// connection; each connection is served on its own thread, all joined on destruction.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace mscan::test {

struct oauth_server_options {
  std::string client_id = "mailscan-app";
  std::string client_secret;                  // required in every token request
  std::string refresh_token;                  // the valid one for grant_type=refresh_token
  std::uint32_t expires_in = 3600;            // lifetime of issued access tokens
  std::string identity = "app@oauth.test";    // introspection's "username" for every token
};

class oauth_token_server {
 public:
  explicit oauth_token_server(oauth_server_options);
  ~oauth_token_server();
  oauth_token_server(const oauth_token_server&) = delete;
  oauth_token_server& operator=(const oauth_token_server&) = delete;

  // The TLS listener's certificate (PEM), e.g. the dovecot fixture's server.pem/server.key:
  // set once the fixture exists (dovecot in turn needs introspection_url at start), before
  // the first token request.
  void use_certificate(const std::filesystem::path& cert_file, const std::filesystem::path& key_file);

  std::string token_url() const;          // https://127.0.0.1:PORT/token
  std::string introspection_url() const;  // http://127.0.0.1:PORT/introspect (plain listener)

  std::size_t token_requests() const;  // every POST /token, answered or not
  std::size_t tokens_issued() const;
  std::size_t introspections() const;
  std::vector<std::string> issued_tokens() const;

  void revoke_refresh_token();       // later refresh grants get 400 invalid_grant
  void set_refresh_token(std::string token);  // a new valid refresh token (re-authorised)
  void expire_access_tokens();       // every token issued so far is inactive from now on
  void fail_next(std::size_t n);     // the next n token requests get 503 temporarily_unavailable

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace mscan::test
