#pragma once
// Many concurrent IMAP sessions against one server, for scale tests: all connections are
// opened at once, every session LOGINs and stays logged in until ALL have answered, so the
// server really holds `connections` authenticated sessions at the same moment; then every
// session LOGOUTs. One thread, Asio coroutines, one overall deadline.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tests/support/dovecot_fixture.hpp"

namespace mscan::test {

struct login_storm_result {
  std::size_t connected = 0;      // TCP connected and greeted
  std::size_t logged_in = 0;      // tagged OK to LOGIN, all held open simultaneously
  std::size_t rejected = 0;       // tagged NO/BAD to LOGIN
  std::size_t logged_out = 0;     // tagged OK to LOGOUT
  bool timed_out = false;
  std::vector<std::string> errors;  // first few, without secrets
  std::chrono::milliseconds elapsed{0};
};

// Session i logs in as users[i % users.size()] over plain TCP to 127.0.0.1:port.
login_storm_result concurrent_logins(std::uint16_t port, const std::vector<dovecot_user>& users,
                                     std::size_t connections,
                                     std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace mscan::test
