#pragma once
// A tiny HTTP/1.1 receiver on 127.0.0.1 for notifier tests: answers each connection's one
// request with the next scripted status and keeps what it received. Blocking accept loop on
// its own thread; stop() closes the acceptor (no sleeps anywhere).
#include <utility>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace mscan::test {

struct received_request {
  std::string method, target, authorization, content_type, body;
};

class http_receiver {
 public:
  explicit http_receiver(std::vector<int> statuses) : statuses_(std::move(statuses)) {
    namespace asio = boost::asio;
    acceptor_.open(asio::ip::tcp::v4());
    acceptor_.bind({asio::ip::make_address("127.0.0.1"), 0});
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this] { serve(); });
  }
  ~http_receiver() { stop(); }
  void stop() {
    boost::system::error_code ec;
    if (thread_.joinable()) {
      acceptor_.close(ec);
      // A blocking accept() is not woken by close() on every platform: connect once.
      boost::asio::ip::tcp::socket poke(ioc_);
      poke.connect({boost::asio::ip::make_address("127.0.0.1"), port_}, ec);
      thread_.join();
    }
  }
  std::uint16_t port() const { return port_; }
  std::vector<received_request> requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }

 private:
  void serve() {
    namespace http = boost::beast::http;
    for (std::size_t i = 0;; ++i) {
      boost::system::error_code ec;
      boost::asio::ip::tcp::socket sock(ioc_);
      acceptor_.accept(sock, ec);
      if (ec || !acceptor_.is_open())
        return;
      boost::beast::flat_buffer buf;
      http::request<http::string_body> req;
      http::read(sock, buf, req, ec);
      if (ec)
        continue;
      {
        std::lock_guard lock(mu_);
        requests_.push_back({std::string(req.method_string()), std::string(req.target()),
                             std::string(req[http::field::authorization]),
                             std::string(req[http::field::content_type]), req.body()});
      }
      const int status = i < statuses_.size() ? statuses_[i] : 200;
      http::response<http::string_body> res{static_cast<http::status>(status), 11};
      res.body() = "{}";
      res.prepare_payload();
      http::write(sock, res, ec);
      sock.shutdown(boost::asio::ip::tcp::socket::shutdown_both, ec);
    }
  }

  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::acceptor acceptor_{ioc_};
  std::uint16_t port_ = 0;
  std::vector<int> statuses_;
  mutable std::mutex mu_;
  std::vector<received_request> requests_;
  std::thread thread_;
};

} // namespace mscan::test
