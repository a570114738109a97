// The simulator's server: one io_context thread, one `connection` object per client.
//
// Connection states (RFC 3501 §3):
//
//   accept ──(past max_connections)──> "* BYE Too many connections" ──> closed
//     │
//     v
//   not_authenticated ──LOGIN/AUTHENTICATE ok──> authenticated ──SELECT/EXAMINE──> selected
//     │   ^  (AUTHENTICATE without SASL-IR waits for one    │   ^                   │ │
//     │   └── continuation line: waiting::auth_response)    │   └──CLOSE/UNSELECT───┘ │
//     │                                                     │   (IDLE waits for DONE: │
//     └───────────────LOGOUT / error / fault────────────────┴──> closed  waiting::idle_done)
//
// One command is served at a time: the next pipelined command is parsed only after the
// previous response has been written, so reading stops while a client does not drain (the
// natural backpressure), and a FETCH response is produced in chunks of about 64 KiB.
#include "bench/simulator/simulator.hpp"

#include <utility>  // before Asio (TOOLCHAIN.md)

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <chrono>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>
#include <cstdio>
#include <filesystem>
#include <fmt/format.h>
#include <ctime>
#include <fstream>
#include <iterator>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <pthread.h>
#include <set>
#include <thread>
#include <unordered_map>
#include <vector>

#include "bench/simulator/command_framer.hpp"
#include "bench/simulator/message_generator.hpp"
#include "bench/simulator/mime_structure.hpp"

namespace mscan::sim {

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

constexpr std::string_view capabilities =
    "IMAP4rev1 LITERAL+ UIDPLUS MOVE IDLE ENABLE CONDSTORE SPECIAL-USE AUTH=PLAIN SASL-IR ID LIST-STATUS";
constexpr std::size_t max_line = 64 * 1024;
constexpr std::size_t max_literal = 64 * 1024;
constexpr std::size_t chunk_bytes = 32 * 1024;  // per write; bounds a busy connection to ~40 KiB

enum flag_bits : std::uint8_t { f_seen = 1, f_answered = 2, f_flagged = 4, f_deleted = 8, f_draft = 16 };
constexpr std::array<std::pair<std::uint8_t, std::string_view>, 5> flag_names{{
    {f_answered, "\\Answered"}, {f_flagged, "\\Flagged"}, {f_deleted, "\\Deleted"},
    {f_seen, "\\Seen"}, {f_draft, "\\Draft"}}};

std::string flags_text(std::uint8_t f) {
  std::string s = "(";
  for (auto [bit, name] : flag_names) {
    if ((f & bit) == 0) continue;
    if (s.size() > 1) s += ' ';
    s += name;
  }
  return s + ")";
}

// Parses "\Seen \Deleted" (keywords are accepted and ignored); nullopt on garbage.
std::optional<std::uint8_t> parse_flags(std::string_view list) {
  tokenizer t(list);
  std::uint8_t f = 0;
  for (auto tok = t.next(); tok.what != token::kind::end; tok = t.next()) {
    if (tok.what != token::kind::atom) return std::nullopt;
    if (tok.text.starts_with("\\")) {
      bool known = false;
      for (auto [bit, name] : flag_names)
        if (iequals(tok.text, name)) {
          f |= bit;
          known = true;
        }
      if (!known && !iequals(tok.text, "\\Recent")) return std::nullopt;
    }
  }
  return f;
}

// 0 = INBOX, 1 = Sent, 2.. = folders the user created (CREATE), in creation order.
using folder_id = std::uint32_t;
constexpr folder_id inbox = 0;
constexpr folder_id sent = 1;
constexpr std::size_t max_created_folders = 64;  // per user: keeps the override state small

// A folder's deviation from its generated state; exists only once a client changed it.
struct folder_state {
  std::set<std::uint32_t> expunged;                 // generated uids that were removed
  std::map<std::uint32_t, std::uint32_t> appended;  // uid → INBOX uid whose content it has
  std::map<std::uint32_t, std::pair<std::uint8_t, std::uint64_t>> flags;  // uid → flags, modseq
  std::uint32_t uidnext = 1;
  std::uint64_t highest_modseq = 1;
};
struct user_state {
  std::vector<folder_state> folders;  // indexed by folder_id
  std::vector<std::string> created;   // names of folders 2.. (CREATE)
};

struct seq_range {
  std::uint32_t lo, hi;
};
using seq_set = std::vector<seq_range>;

// "1:5,7,9:*" with `star` standing for '*'; ranges are unordered (RFC 3501 §9 seq-range).
std::optional<seq_set> parse_seq_set(std::string_view s, std::uint32_t star) {
  seq_set out;
  auto number = [&](std::string_view v) -> std::optional<std::uint32_t> {
    if (v == "*") return star;
    if (v.empty() || v.size() > 10) return std::nullopt;
    std::uint64_t n = 0;
    for (char c : v) {
      if (c < '0' || c > '9') return std::nullopt;
      n = n * 10 + static_cast<std::uint64_t>(c - '0');
    }
    if (n == 0 || n > 0xffffffffULL) return std::nullopt;
    return static_cast<std::uint32_t>(n);
  };
  while (!s.empty()) {
    const auto comma = s.find(',');
    const auto part = s.substr(0, comma);
    const auto colon = part.find(':');
    auto a = number(part.substr(0, colon));
    auto b = colon == std::string_view::npos ? a : number(part.substr(colon + 1));
    if (!a || !b) return std::nullopt;
    out.push_back({std::min(*a, *b), std::max(*a, *b)});
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
    if (s.empty()) return std::nullopt;
  }
  if (out.empty()) return std::nullopt;
  return out;
}

bool in_set(const seq_set& set, std::uint32_t v) {
  for (const auto& r : set)
    if (v >= r.lo && v <= r.hi) return true;
  return false;
}

// "1:3,7" from an ascending list.
std::string compact_set(const std::vector<std::uint32_t>& v) {
  std::string out;
  for (std::size_t i = 0; i < v.size();) {
    std::size_t j = i;
    while (j + 1 < v.size() && v[j + 1] == v[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += j == i ? fmt::format("{}", v[i]) : fmt::format("{}:{}", v[i], v[j]);
    i = j + 1;
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view in) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=') break;
    const int v = val(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

bool wildcard_match(std::string_view pat, std::string_view name) {
  if (pat.empty()) return name.empty();
  if (pat[0] == '*' || pat[0] == '%') {
    for (std::size_t i = 0; i <= name.size(); ++i)
      if (wildcard_match(pat.substr(1), name.substr(i))) return true;
    return false;
  }
  if (name.empty()) return false;
  const bool same = pat.size() >= 1 && (std::toupper(static_cast<unsigned char>(pat[0])) ==
                                        std::toupper(static_cast<unsigned char>(name[0])));
  return same && wildcard_match(pat.substr(1), name.substr(1));
}

// "sim42" → 42 if below `mailboxes`.
std::optional<std::size_t> parse_user(std::string_view name, std::size_t mailboxes) {
  if (name.size() < 4 || name.size() > 23 || !iequals(name.substr(0, 3), "sim")) return std::nullopt;
  const auto digits = name.substr(3);
  if (digits.size() > 1 && digits[0] == '0') return std::nullopt;
  std::size_t n = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<std::size_t>(c - '0');
  }
  if (n >= mailboxes) return std::nullopt;
  return n;
}

// Extracts a header section: the listed fields (or all but them), then the empty line.
std::string filter_header(std::string_view header, const std::vector<std::string>& fields, bool exclude) {
  std::string out;
  std::size_t pos = 0;
  while (pos < header.size()) {
    auto end = header.find("\r\n", pos);
    if (end == std::string_view::npos) end = header.size();
    // Unfold: a field continues while the next line starts with white space.
    while (end + 2 < header.size() && (header[end + 2] == ' ' || header[end + 2] == '\t'))
      end = header.find("\r\n", end + 2);
    const auto line = header.substr(pos, end - pos);
    if (!line.empty()) {
      const auto name = line.substr(0, line.find(':'));
      bool listed = false;
      for (const auto& f : fields) listed = listed || iequals(f, name);
      if (listed != exclude) {
        out += line;
        out += "\r\n";
      }
    }
    pos = end + 2;
  }
  return out + "\r\n";
}

// BODY[n] (or with `mime`, BODY[n.MIME]) of our generated messages: the n-th part's content
// without its MIME header, or that header with its empty line.
std::optional<std::string> body_part(const generated_message& m, std::uint32_t n, bool mime) {
  if (!m.multipart) {
    if (n != 1) return std::nullopt;
    return mime ? m.header : m.body;
  }
  const auto bpos = m.header.find("boundary=\"");
  if (bpos == std::string::npos) return std::nullopt;
  const auto bend = m.header.find('"', bpos + 10);
  const std::string delim = "--" + m.header.substr(bpos + 10, bend - bpos - 10);
  std::size_t pos = 0;
  for (std::uint32_t i = 0; i < n; ++i) {
    pos = m.body.find(delim + "\r\n", pos);
    if (pos == std::string::npos) return std::nullopt;
    pos += delim.size() + 2;
  }
  const auto hdr_end = m.body.find("\r\n\r\n", pos);
  if (hdr_end == std::string::npos) return std::nullopt;
  const auto start = hdr_end + 4;
  if (mime) return m.body.substr(pos, start - pos);
  const auto stop = m.body.find("\r\n" + delim, start);
  if (stop == std::string::npos) return std::nullopt;
  return m.body.substr(start, stop - start);  // the CRLF before the delimiter belongs to it
}


}  // namespace

class connection;

struct server {
  sim_options opt;
  message_generator gen;
  // sim_options::eml_dir, loaded by start(): each file parsed (its header and body are the
  // CRLF bytes) and its BODYSTRUCTURE answer.
  struct eml_file {
    mime_entity root;
    std::string structure;
  };
  std::vector<eml_file> emls;

  std::atomic<std::size_t> current{0}, peak{0}, accepted{0}, logins{0}, failed_logins{0},
      refused{0}, bytes_sent{0}, throttled_logins{0};
  std::chrono::steady_clock::time_point started_at{};
  std::atomic<std::uint32_t> uidvalidity_counter{0};
  mutable std::mutex commands_mu;
  std::map<std::string, std::size_t> commands;
  mutable std::mutex error_mu;
  std::string error;

  asio::io_context ioc{1};
  tcp::acceptor acceptor{ioc};
  asio::steady_timer accept_retry{ioc};
  std::thread thread;
  clockid_t cpu_clock{};
  std::atomic<bool> finished{false};
  std::atomic<std::int64_t> final_cpu_ns{0};
  bool started = false;
  bool stopping = false;  // io thread only

  // io thread only
  std::unordered_map<std::size_t, user_state> users;
  std::unordered_map<connection*, std::weak_ptr<connection>> live;

  explicit server(sim_options o) : opt(std::move(o)) {
    if (opt.base_time == 0) {
      const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
      opt.base_time = midnight_utc(now);
    }
    gen.seed = opt.seed;
    gen.messages = opt.messages;
    gen.message_bytes = opt.message_bytes;
    gen.base_time = opt.base_time;
  }

  // What (user, uid of the generated sequence) serves: the generated message or a file.
  generated_message content(std::size_t user, std::uint32_t uid) const {
    if (emls.empty()) return gen.generate(user, uid);
    const auto& f = emls[(mix(opt.seed, user, 0xe31) + uid - 1) % emls.size()];
    generated_message m;
    m.header = f.root.header;
    m.body = f.root.body;
    m.bodystructure = f.structure;
    m.body_basic = f.structure;  // BODY: the extension data is allowed to be there
    m.date = gen.date_of(uid);
    m.multipart = f.root.type == "multipart";
    m.entity = &f.root;
    return m;
  }

  // Reads sim_options::eml_dir; false (with error set) when it cannot or finds no file.
  bool load_emls() {
    if (opt.eml_dir.empty()) return true;
    std::vector<std::filesystem::path> files;
    std::error_code ec;
    for (std::filesystem::directory_iterator it(opt.eml_dir, ec), end; !ec && it != end; it.increment(ec))
      if (it->path().extension() == ".eml" && it->is_regular_file(ec)) files.push_back(it->path());
    if (ec) {
      set_error(fmt::format("cannot read {}: {}", opt.eml_dir, ec.message()));
      return false;
    }
    if (files.empty()) {
      set_error(fmt::format("no .eml file in {}", opt.eml_dir));
      return false;
    }
    std::sort(files.begin(), files.end());
    for (const auto& path : files) {
      std::ifstream in(path, std::ios::binary);
      std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (!in.good() && !in.eof()) {
        set_error(fmt::format("cannot read {}", path.string()));
        return false;
      }
      // IMAP sends CRLF: a bare LF (or CR) becomes CRLF, so RFC822.SIZE counts what is sent.
      std::string crlf;
      crlf.reserve(bytes.size() + bytes.size() / 16);
      for (std::size_t i = 0; i < bytes.size(); ++i) {
        const char c = bytes[i];
        if (c == '\r') {
          crlf += "\r\n";
          if (i + 1 < bytes.size() && bytes[i + 1] == '\n') ++i;
        } else if (c == '\n') {
          crlf += "\r\n";
        } else {
          crlf += c;
        }
      }
      eml_file f;
      f.root = parse_entity(crlf);
      f.structure = body_structure(f.root);
      emls.push_back(std::move(f));
    }
    return true;
  }

  void set_error(std::string e) {
    std::lock_guard lk(error_mu);
    error = std::move(e);
  }
  void count_command(const std::string& name) {
    std::lock_guard lk(commands_mu);
    ++commands[name];
  }

  bool fault(std::size_t user, std::uint64_t kind, double fraction) const {
    return fraction > 0 && unit_interval(mix(opt.seed, user, 0xfa017, kind)) < fraction;
  }
  bool wrong_password(std::size_t u) const { return fault(u, 1, opt.faults.wrong_password); }
  bool disconnect_mid_fetch(std::size_t u) const { return fault(u, 2, opt.faults.disconnect_mid_fetch); }
  bool slow(std::size_t u) const { return fault(u, 3, opt.faults.slow); }
  bool uidvalidity_reset(std::size_t u) const { return fault(u, 4, opt.faults.uidvalidity_reset); }
  bool throttled(std::size_t u) const {
    return fault(u, 5, opt.faults.throttle) &&
           (opt.faults.throttle_s <= 0 ||
            std::chrono::steady_clock::now() - started_at < std::chrono::seconds(opt.faults.throttle_s));
  }

  // ---- folder model (io thread only) ----
  std::uint32_t base_count(folder_id f) const {
    return f == inbox ? static_cast<std::uint32_t>(opt.messages) : 0;
  }
  const folder_state* find(std::size_t user, folder_id f) const {
    auto it = users.find(user);
    return it == users.end() || f >= it->second.folders.size() ? nullptr : &it->second.folders[f];
  }
  user_state& touch_user(std::size_t user) {
    auto [it, fresh] = users.try_emplace(user);
    if (fresh) {
      it->second.folders.resize(2);
      it->second.folders[inbox].uidnext = base_count(inbox) + 1;
      it->second.folders[sent].uidnext = 1;
    }
    return it->second;
  }
  // Only for folders that exist (resolve_folder / create_folder returned them).
  folder_state& touch(std::size_t user, folder_id f) { return touch_user(user).folders.at(f); }

  std::size_t folder_count(std::size_t user) const {
    auto it = users.find(user);
    return it == users.end() ? 2 : it->second.folders.size();
  }
  std::string folder_name(std::size_t user, folder_id f) const {
    if (f == inbox) return "INBOX";
    if (f == sent) return "Sent";
    return users.at(user).created.at(f - 2);
  }
  std::optional<folder_id> resolve_folder(std::size_t user, std::string_view name) const {
    if (iequals(name, "INBOX")) return inbox;
    if (name == "Sent") return sent;
    auto it = users.find(user);
    if (it == users.end()) return std::nullopt;
    const auto& c = it->second.created;
    for (std::size_t i = 0; i < c.size(); ++i)
      if (c[i] == name) return static_cast<folder_id>(i + 2);
    return std::nullopt;
  }
  std::optional<folder_id> create_folder(std::size_t user, std::string_view name) {
    auto& u = touch_user(user);
    if (u.created.size() >= max_created_folders) return std::nullopt;
    u.created.emplace_back(name);
    u.folders.emplace_back();
    return static_cast<folder_id>(u.folders.size() - 1);
  }
  std::vector<std::uint32_t> visible(std::size_t user, folder_id f) const {
    const auto* st = find(user, f);
    std::vector<std::uint32_t> v;
    v.reserve(base_count(f) + (st ? st->appended.size() : 0));
    for (std::uint32_t u = 1; u <= base_count(f); ++u)
      if (!st || !st->expunged.contains(u)) v.push_back(u);
    if (st)
      for (const auto& [u, src] : st->appended) v.push_back(u);
    return v;
  }
  std::uint32_t source_of(std::size_t user, folder_id f, std::uint32_t uid) const {
    if (uid <= base_count(f)) return uid;
    const auto* st = find(user, f);
    return st ? st->appended.at(uid) : uid;
  }
  std::uint8_t flags_of(std::size_t user, folder_id f, std::uint32_t uid) const {
    if (const auto* st = find(user, f)) {
      auto it = st->flags.find(uid);
      if (it != st->flags.end()) return it->second.first;
    }
    return uid <= base_count(f) && gen.initially_seen(user, uid) ? f_seen : 0;
  }
  std::uint64_t modseq_of(std::size_t user, folder_id f, std::uint32_t uid) const {
    if (const auto* st = find(user, f)) {
      auto it = st->flags.find(uid);
      if (it != st->flags.end()) return it->second.second;
    }
    return 1;
  }
  void set_flags(std::size_t user, folder_id f, std::uint32_t uid, std::uint8_t flags) {
    auto& st = touch(user, f);
    st.flags[uid] = {flags, ++st.highest_modseq};
  }
  void remove(std::size_t user, folder_id f, std::uint32_t uid) {
    auto& st = touch(user, f);
    if (uid <= base_count(f)) st.expunged.insert(uid);
    else st.appended.erase(uid);
    st.flags.erase(uid);
    ++st.highest_modseq;
  }
  std::uint32_t uidnext(std::size_t user, folder_id f) const {
    const auto* st = find(user, f);
    return st ? st->uidnext : base_count(f) + 1;
  }
  std::uint64_t highest_modseq(std::size_t user, folder_id f) const {
    const auto* st = find(user, f);
    return st ? st->highest_modseq : 1;
  }
  std::uint32_t uidvalidity(std::size_t user, folder_id f, bool advance) {
    if (uidvalidity_reset(user)) {
      const auto n = advance ? ++uidvalidity_counter : uidvalidity_counter.load();
      return 2000000000u + n * 2 + f;
    }
    return static_cast<std::uint32_t>(mix(opt.seed, 0x1d) % 1000000000u) * 2 + 1 + f;
  }

  void start_accept();
  void on_accept(tcp::socket sock);
};

class connection : public std::enable_shared_from_this<connection> {
 public:
  connection(server& srv, tcp::socket sock)
      : srv_(srv), sock_(std::move(sock)), timer_(srv.ioc), framer_(max_line, max_literal) {}
  ~connection() {
    srv_.current--;
    srv_.live.erase(this);
  }

  void start() {
    out_ = fmt::format("* OK [CAPABILITY {}] mailscan simulator ready\r\n", capabilities);
    flush(true);
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    boost::system::error_code ec;
    timer_.cancel();
    sock_.shutdown(tcp::socket::shutdown_both, ec);
    sock_.close(ec);
  }

 private:
  enum class state { not_authenticated, authenticated, selected };
  enum class waiting { command, auth_response, idle_done };

  struct fetch_item {
    enum class kind { uid, flags, internaldate, size, section, bodystructure, body, modseq, envelope };
    kind what;
    std::string label;    // how the item is named in the response
    std::string section;  // upper-cased section text between the brackets
    bool peek = false;
    std::optional<std::pair<std::size_t, std::size_t>> partial;
  };
  struct fetch_job {
    std::string tag, command;
    std::vector<std::uint32_t> view;  // visible uids; seq = index + 1
    std::vector<std::uint32_t> seqs;  // which ones, in order
    std::size_t next = 0;
    std::vector<fetch_item> items;
    bool add_flags = false;  // a non-peek body fetch set \Seen
  };

  // ---------------------------------------------------------------- I/O
  int delay_ms() const {
    return srv_.opt.latency_ms + (slow_ ? srv_.opt.faults.slow_ms : 0);
  }

  void flush(bool delayed) {
    if (closed_) return;
    const int ms = delayed ? delay_ms() : 0;
    if (ms <= 0) {
      do_write();
      return;
    }
    timer_.expires_after(std::chrono::milliseconds(ms));
    timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec || self->closed_) return;
      self->do_write();
    });
  }

  void do_write() {
    writing_.swap(out_);
    out_.clear();
    asio::async_write(sock_, asio::buffer(writing_),
                      [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
                        self->srv_.bytes_sent += n;
                        if (ec || self->closed_) {
                          self->close();
                          return;
                        }
                        self->on_written();
                      });
  }

  void on_written() {
    if (close_after_write_) {
      close();
      return;
    }
    if (job_) {
      produce_fetch_chunk();
      do_write();
      return;
    }
    // Between commands an idle connection keeps no large buffers (thousands may sit idle).
    constexpr std::size_t keep = 8 * 1024;
    if (writing_.capacity() > keep) std::string().swap(writing_);
    if (out_.capacity() > keep) std::string().swap(out_);
    if (in_.empty() && in_.capacity() > keep) std::string().swap(in_);
    process_input();
  }

  void start_read() {
    if (closed_) return;
    sock_.async_read_some(asio::buffer(rbuf_),
                          [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
                            if (ec || self->closed_) {
                              self->close();
                              return;
                            }
                            self->in_.append(self->rbuf_.data(), n);
                            self->process_input();
                          });
  }

  void process_input() {
    if (closed_) return;
    const frame f = framer_.next(in_);
    switch (f.what) {
      case frame::kind::need_more:
        start_read();
        return;
      case frame::kind::send_continuation:
        out_ = "+ Ready for literal data\r\n";
        flush(false);
        return;
      case frame::kind::too_long:
        out_ = "* BYE Command line or literal too long\r\n";
        close_after_write_ = true;
        flush(false);
        return;
      case frame::kind::complete:
        break;
    }
    const std::string line = in_.substr(0, f.length);
    in_.erase(0, f.length);
    try {
      handle(line);
    } catch (const std::exception&) {
      out_ += "* BYE Internal simulator error\r\n";
      close_after_write_ = true;
    }
    flush(true);
  }

  // ---------------------------------------------------------------- dispatch
  void tagged(std::string_view tag, std::string_view text) {
    out_ += tag;
    out_ += ' ';
    out_ += text;
    out_ += "\r\n";
  }

  void handle(std::string_view line) {
    if (waiting_ == waiting::idle_done) {
      waiting_ = waiting::command;
      tokenizer t(line);
      if (iequals(t.rest(), "DONE")) tagged(pending_tag_, "OK IDLE terminated");
      else tagged(pending_tag_, "BAD Expected DONE");
      return;
    }
    if (waiting_ == waiting::auth_response) {
      waiting_ = waiting::command;
      tokenizer t(line);
      const auto resp = t.rest();
      if (resp == "*") tagged(pending_tag_, "BAD AUTHENTICATE cancelled");
      else authenticate_plain(pending_tag_, resp);
      return;
    }

    tokenizer t(line);
    const token tag = t.next();
    if (tag.what != token::kind::atom || tag.text == "*" || tag.text == "+") {
      out_ += "* BAD Missing tag\r\n";
      return;
    }
    const token cmd = t.next();
    if (cmd.what != token::kind::atom) {
      tagged(tag.text, "BAD Missing command");
      return;
    }
    std::string name = to_upper(cmd.text);
    bool uid = false;
    if (name == "UID") {
      const token sub = t.next();
      name = sub.what == token::kind::atom ? to_upper(sub.text) : "";
      uid = true;
      if (name != "FETCH" && name != "SEARCH" && name != "STORE" && name != "COPY" &&
          name != "MOVE" && name != "EXPUNGE") {
        tagged(tag.text, "BAD Unknown UID command");
        return;
      }
    }
    dispatch(tag.text, name, uid, t);
  }

  void dispatch(const std::string& tag, const std::string& name, bool uid, tokenizer& t) {
    auto count = [&] { srv_.count_command(name); };
    // Any state
    if (name == "CAPABILITY") {
      count();
      out_ += fmt::format("* CAPABILITY {}\r\n", capabilities);
      return tagged(tag, "OK CAPABILITY completed");
    }
    if (name == "ID") {  // RFC 2971: any state; what the client says is not kept
      count();
      out_ += "* ID (\"name\" \"mailscan-simulator\")\r\n";
      return tagged(tag, "OK ID completed");
    }
    if (name == "NOOP" || name == "CHECK") {
      count();
      return tagged(tag, fmt::format("OK {} completed", name));
    }
    if (name == "LOGOUT") {
      count();
      out_ += "* BYE Logging out\r\n";
      tagged(tag, "OK LOGOUT completed");
      close_after_write_ = true;
      return;
    }
    if (state_ == state::not_authenticated) {
      if (name == "LOGIN") {
        count();
        return login(tag, t);
      }
      if (name == "AUTHENTICATE") {
        count();
        return authenticate(tag, t);
      }
      if (is_known(name)) return tagged(tag, "BAD Not authenticated");
      return tagged(tag, "BAD Unknown command");
    }
    if (name == "LOGIN" || name == "AUTHENTICATE") return tagged(tag, "BAD Already authenticated");
    if (name == "ENABLE") {
      count();
      std::string enabled;
      for (auto tok = t.next(); tok.what == token::kind::atom; tok = t.next())
        if (iequals(tok.text, "CONDSTORE")) {
          enabled = " CONDSTORE";
          condstore_ = true;
        }
      out_ += fmt::format("* ENABLED{}\r\n", enabled);
      return tagged(tag, "OK ENABLE completed");
    }
    if (name == "LIST" || name == "LSUB") {
      count();
      return list(tag, name, t);
    }
    if (name == "STATUS") {
      count();
      return status(tag, t);
    }
    if (name == "CREATE") {
      count();
      return create(tag, t);
    }
    if (name == "SUBSCRIBE" || name == "UNSUBSCRIBE") {
      count();
      return tagged(tag, fmt::format("OK {} completed", name));  // every folder counts as subscribed
    }
    if (name == "SELECT" || name == "EXAMINE") {
      count();
      return select(tag, name, t);
    }
    if (name == "IDLE") {
      count();
      pending_tag_ = tag;
      waiting_ = waiting::idle_done;
      out_ += "+ idling\r\n";
      return;
    }
    if (state_ != state::selected) {
      if (is_known(name)) return tagged(tag, "BAD No mailbox selected");
      return tagged(tag, "BAD Unknown command");
    }
    if (name == "CLOSE" || name == "UNSELECT") {
      count();
      if (name == "CLOSE" && !read_only_) expunge_matching(nullptr, false);
      state_ = state::authenticated;
      return tagged(tag, fmt::format("OK {} completed", name));
    }
    if (name == "FETCH") {
      count();
      return fetch(tag, uid, t);
    }
    if (name == "SEARCH") {
      count();
      return search(tag, uid, t);
    }
    if (name == "STORE") {
      count();
      return store(tag, uid, t);
    }
    if (name == "COPY" || name == "MOVE") {
      count();
      return copy(tag, name == "MOVE", uid, t);
    }
    if (name == "EXPUNGE") {
      count();
      if (read_only_) return tagged(tag, "NO Mailbox is read-only");
      std::optional<seq_set> set;
      if (uid) {
        const token s = t.next();
        set = s.what == token::kind::atom ? parse_seq_set(s.text, max_uid()) : std::nullopt;
        if (!set) return tagged(tag, "BAD Invalid UID set");
      }
      expunge_matching(set ? &*set : nullptr, true);
      return tagged(tag, "OK EXPUNGE completed");
    }
    tagged(tag, "BAD Unknown command");
  }

  static bool is_known(const std::string& n) {
    for (std::string_view k : {"ENABLE", "LIST", "LSUB", "STATUS", "CREATE", "SUBSCRIBE", "UNSUBSCRIBE",
                               "SELECT", "EXAMINE", "IDLE", "CLOSE",
                               "UNSELECT", "FETCH", "SEARCH", "STORE", "COPY", "MOVE", "EXPUNGE"})
      if (n == k) return true;
    return false;
  }

  // ---------------------------------------------------------------- authentication
  void login(const std::string& tag, tokenizer& t) {
    const token user = t.next();
    const token pass = t.next();
    if (!user.is_string() || !pass.is_string() || !t.at_end())
      return tagged(tag, "BAD LOGIN expects user and password");
    finish_login(tag, user.text, pass.text);
  }

  void authenticate(const std::string& tag, tokenizer& t) {
    const token mech = t.next();
    if (mech.what != token::kind::atom || !iequals(mech.text, "PLAIN"))
      return tagged(tag, "NO [CANNOT] Unsupported mechanism");
    const token ir = t.next();
    if (ir.what == token::kind::end) {
      pending_tag_ = tag;
      waiting_ = waiting::auth_response;
      out_ += "+ \r\n";
      return;
    }
    if (ir.what != token::kind::atom) return tagged(tag, "BAD Invalid initial response");
    authenticate_plain(tag, ir.text == "=" ? "" : ir.text);
  }

  void authenticate_plain(const std::string& tag, std::string_view b64) {
    const auto decoded = base64_decode(b64);
    if (!decoded) return tagged(tag, "BAD Invalid base64");
    // authzid NUL authcid NUL password
    const auto n1 = decoded->find('\0');
    const auto n2 = n1 == std::string::npos ? n1 : decoded->find('\0', n1 + 1);
    if (n2 == std::string::npos) return tagged(tag, "BAD Malformed PLAIN response");
    const auto authzid = std::string_view(*decoded).substr(0, n1);
    const auto authcid = std::string_view(*decoded).substr(n1 + 1, n2 - n1 - 1);
    if (!authzid.empty() && authzid != authcid)
      return fail_login(tag);
    finish_login(tag, authcid, std::string_view(*decoded).substr(n2 + 1));
  }

  void fail_login(const std::string& tag) {
    srv_.failed_logins++;
    tagged(tag, "NO [AUTHENTICATIONFAILED] Invalid credentials");
  }

  void finish_login(const std::string& tag, std::string_view user, std::string_view pass) {
    const auto u = parse_user(user, srv_.opt.mailboxes);
    if (u && srv_.throttled(*u)) {  // shedding load: refused before the password is checked
      srv_.throttled_logins++;
      return tagged(tag, srv_.opt.faults.throttle_answer);
    }
    if (!u || pass != "sim" || srv_.wrong_password(*u)) return fail_login(tag);
    user_ = *u;
    slow_ = srv_.slow(user_);
    state_ = state::authenticated;
    srv_.logins++;
    tagged(tag, fmt::format("OK [CAPABILITY {}] Logged in", capabilities));
  }

  // ---------------------------------------------------------------- mailboxes
  void list(const std::string& tag, const std::string& name, tokenizer& t) {
    token ref = t.next();
    if (ref.what == token::kind::list) ref = t.next();  // LIST-EXTENDED selection options
    const token pat = t.next();
    if (!ref.is_string() || !(pat.is_string() || pat.what == token::kind::list))
      return tagged(tag, fmt::format("BAD {} expects reference and pattern", name));
    if (pat.is_string() && pat.text.empty()) {
      out_ += fmt::format("* {} (\\Noselect) \"/\" \"\"\r\n", name);
      return tagged(tag, fmt::format("OK {} completed", name));
    }
    // LIST-STATUS (RFC 5819): RETURN (STATUS (items)) answers STATUS for every listed folder.
    std::optional<std::string> status_items;
    if (const token ret = t.next(); ret.what == token::kind::atom && iequals(ret.text, "RETURN")) {
      const token opts = t.next();
      if (opts.what != token::kind::list) return tagged(tag, "BAD RETURN expects a list");
      tokenizer ot(opts.text);
      for (auto o = ot.next(); o.what != token::kind::end; o = ot.next())
        if (o.what == token::kind::atom && iequals(o.text, "STATUS")) {
          const token items = ot.next();
          if (items.what != token::kind::list) return tagged(tag, "BAD STATUS expects a list");
          status_items = items.text;
        }
    }
    for (folder_id f = 0; f < srv_.folder_count(user_); ++f) {
      const auto folder = srv_.folder_name(user_, f);
      bool match = false;
      if (pat.what == token::kind::list) {
        tokenizer pt(pat.text);
        for (auto p = pt.next(); p.is_string(); p = pt.next()) match = match || wildcard_match(p.text, folder);
      } else {
        match = wildcard_match(ref.text + pat.text, folder);
      }
      if (!match) continue;
      out_ += fmt::format("* {} ({}) \"/\" {}\r\n", name,
                          f == sent ? "\\HasNoChildren \\Sent" : "\\HasNoChildren", imap_string(folder));
      if (status_items) {
        const auto line = status_line(f, *status_items);
        if (!line) return tagged(tag, "BAD Unknown STATUS item");
        out_ += *line;
      }
    }
    tagged(tag, fmt::format("OK {} completed", name));
  }

  void create(const std::string& tag, tokenizer& t) {
    const token mbox = t.next();
    if (!mbox.is_string() || mbox.text.empty()) return tagged(tag, "BAD CREATE expects a mailbox name");
    std::string name = mbox.text;
    if (name.ends_with("/")) name.pop_back();  // a trailing delimiter only declares intent
    if (name.empty() || name.find_first_of("*%\r\n\"\\") != std::string::npos || name.size() > 200)
      return tagged(tag, "NO [CANNOT] Invalid mailbox name");
    if (srv_.resolve_folder(user_, name)) return tagged(tag, "NO [ALREADYEXISTS] Mailbox exists");
    if (!srv_.create_folder(user_, name)) return tagged(tag, "NO [LIMIT] Too many mailboxes");
    tagged(tag, "OK CREATE completed");
  }

  std::size_t unseen_count(folder_id f, const std::vector<std::uint32_t>& view) const {
    std::size_t n = 0;
    for (auto u : view) n += (srv_.flags_of(user_, f, u) & f_seen) == 0;
    return n;
  }

  void status(const std::string& tag, tokenizer& t) {
    const token mbox = t.next();
    const token items = t.next();
    if (!mbox.is_string() || items.what != token::kind::list)
      return tagged(tag, "BAD STATUS expects mailbox and item list");
    const auto f = srv_.resolve_folder(user_, mbox.text);
    if (!f) return tagged(tag, "NO [NONEXISTENT] Mailbox doesn't exist");
    const auto line = status_line(*f, items.text);
    if (!line) return tagged(tag, "BAD Unknown STATUS item");
    out_ += *line;
    tagged(tag, "OK STATUS completed");
  }

  // "* STATUS name (...)\r\n" for STATUS and LIST-STATUS; nullopt for an unknown item.
  std::optional<std::string> status_line(folder_id f, std::string_view items) {
    const auto view = srv_.visible(user_, f);
    std::string out;
    tokenizer it(items);
    for (auto item = it.next(); item.what != token::kind::end; item = it.next()) {
      const auto k = to_upper(item.text);
      std::string value;
      if (k == "MESSAGES") value = fmt::format("{}", view.size());
      else if (k == "RECENT") value = "0";
      else if (k == "UIDNEXT") value = fmt::format("{}", srv_.uidnext(user_, f));
      else if (k == "UIDVALIDITY") value = fmt::format("{}", srv_.uidvalidity(user_, f, true));
      else if (k == "UNSEEN") value = fmt::format("{}", unseen_count(f, view));
      else if (k == "HIGHESTMODSEQ") value = fmt::format("{}", srv_.highest_modseq(user_, f));
      else return std::nullopt;
      if (!out.empty()) out += ' ';
      out += k + " " + value;
    }
    return fmt::format("* STATUS {} ({})\r\n", imap_string(srv_.folder_name(user_, f)), out);
  }

  void select(const std::string& tag, const std::string& name, tokenizer& t) {
    const token mbox = t.next();
    if (!mbox.is_string()) return tagged(tag, fmt::format("BAD {} expects a mailbox", name));
    state_ = state::authenticated;  // a failed SELECT leaves no mailbox selected
    const auto f = srv_.resolve_folder(user_, mbox.text);
    if (!f) return tagged(tag, "NO [NONEXISTENT] Mailbox doesn't exist");
    const token params = t.next();  // SELECT INBOX (CONDSTORE) enables it too (RFC 7162)
    if (params.what == token::kind::list && iequals(tokenizer(params.text).rest(), "CONDSTORE")) condstore_ = true;
    folder_ = *f;
    read_only_ = name == "EXAMINE";
    state_ = state::selected;
    const auto view = srv_.visible(user_, folder_);
    out_ += "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n";
    out_ += "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)] Flags permitted\r\n";
    out_ += fmt::format("* {} EXISTS\r\n* 0 RECENT\r\n", view.size());
    for (std::size_t i = 0; i < view.size(); ++i)
      if ((srv_.flags_of(user_, folder_, view[i]) & f_seen) == 0) {
        out_ += fmt::format("* OK [UNSEEN {}] First unseen\r\n", i + 1);
        break;
      }
    out_ += fmt::format("* OK [UIDVALIDITY {}] UIDs valid\r\n", srv_.uidvalidity(user_, folder_, true));
    out_ += fmt::format("* OK [UIDNEXT {}] Predicted next UID\r\n", srv_.uidnext(user_, folder_));
    out_ += fmt::format("* OK [HIGHESTMODSEQ {}] Highest\r\n", srv_.highest_modseq(user_, folder_));
    tagged(tag, fmt::format("OK [{}] {} completed", read_only_ ? "READ-ONLY" : "READ-WRITE", name));
  }

  std::uint32_t max_uid() const {
    const auto n = srv_.uidnext(user_, folder_);
    return n > 1 ? n - 1 : 1;
  }

  // Resolves a sequence or UID set to sequence numbers (1-based) of `view`, ascending.
  std::optional<std::vector<std::uint32_t>> resolve(std::string_view text, bool uid,
                                                    const std::vector<std::uint32_t>& view) const {
    const std::uint32_t star =
        uid ? (view.empty() ? max_uid() : view.back()) : static_cast<std::uint32_t>(std::max<std::size_t>(view.size(), 1));
    const auto set = parse_seq_set(text, star);
    if (!set) return std::nullopt;
    std::vector<std::uint32_t> seqs;
    for (std::size_t i = 0; i < view.size(); ++i)
      if (in_set(*set, uid ? view[i] : static_cast<std::uint32_t>(i + 1)))
        seqs.push_back(static_cast<std::uint32_t>(i + 1));
    return seqs;
  }

  // ---------------------------------------------------------------- FETCH
  std::optional<fetch_item> parse_fetch_item(const std::string& raw) {
    const std::string up = to_upper(raw);
    using k = fetch_item::kind;
    if (up == "UID") return fetch_item{k::uid, "UID", {}, false, {}};
    if (up == "FLAGS") return fetch_item{k::flags, "FLAGS", {}, false, {}};
    if (up == "INTERNALDATE") return fetch_item{k::internaldate, "INTERNALDATE", {}, false, {}};
    if (up == "RFC822.SIZE") return fetch_item{k::size, "RFC822.SIZE", {}, false, {}};
    if (up == "BODYSTRUCTURE") return fetch_item{k::bodystructure, "BODYSTRUCTURE", {}, false, {}};
    if (up == "BODY") return fetch_item{k::body, "BODY", {}, false, {}};
    if (up == "MODSEQ") return fetch_item{k::modseq, "MODSEQ", {}, false, {}};
    if (up == "ENVELOPE") return fetch_item{k::envelope, "ENVELOPE", {}, false, {}};
    if (up == "RFC822") return fetch_item{k::section, "RFC822", "", false, {}};
    if (up == "RFC822.HEADER") return fetch_item{k::section, "RFC822.HEADER", "HEADER", true, {}};
    if (up == "RFC822.TEXT") return fetch_item{k::section, "RFC822.TEXT", "TEXT", false, {}};
    fetch_item item{k::section, {}, {}, false, {}};
    std::string_view rest(up);
    if (rest.starts_with("BODY.PEEK[")) {
      item.peek = true;
      rest.remove_prefix(10);
    } else if (rest.starts_with("BODY[")) {
      rest.remove_prefix(5);
    } else {
      return std::nullopt;
    }
    const auto close = rest.rfind(']');
    if (close == std::string_view::npos) return std::nullopt;
    item.section = std::string(rest.substr(0, close));
    rest.remove_prefix(close + 1);
    item.label = "BODY[" + item.section + "]";
    if (!rest.empty()) {
      // <origin.count>
      if (rest.front() != '<' || rest.back() != '>') return std::nullopt;
      const auto inner = rest.substr(1, rest.size() - 2);
      const auto dot = inner.find('.');
      if (dot == std::string_view::npos) return std::nullopt;
      std::size_t o = 0, n = 0;
      for (char c : inner.substr(0, dot)) {
        if (c < '0' || c > '9') return std::nullopt;
        o = o * 10 + static_cast<std::size_t>(c - '0');
      }
      for (char c : inner.substr(dot + 1)) {
        if (c < '0' || c > '9') return std::nullopt;
        n = n * 10 + static_cast<std::size_t>(c - '0');
      }
      if (inner.substr(0, dot).empty() || inner.substr(dot + 1).empty() || n == 0) return std::nullopt;
      item.partial = std::pair{o, n};
      item.label += fmt::format("<{}>", o);
    }
    // Validate the section now so a bad one is a BAD, not a broken response.
    const auto& s = item.section;
    if (s.empty() || s == "HEADER" || s == "TEXT" || s.starts_with("HEADER.FIELDS")) return item;
    // Part numbers, then at most one of MIME, HEADER, TEXT (RFC 3501 6.4.5).
    std::string_view rest_s(s);
    bool number = false;
    while (!rest_s.empty() && rest_s.front() >= '1' && rest_s.front() <= '9') {
      auto dot = rest_s.find('.');
      auto tok = rest_s.substr(0, dot);
      if (tok.size() > 4 || tok.find_first_not_of("0123456789") != std::string_view::npos) return std::nullopt;
      number = true;
      rest_s = dot == std::string_view::npos ? std::string_view() : rest_s.substr(dot + 1);
    }
    if (number && (rest_s.empty() || rest_s == "MIME" || rest_s == "HEADER" || rest_s == "TEXT")) return item;
    return std::nullopt;
  }

  std::optional<std::string> section_data(const fetch_item& item, const generated_message& m) const {
    const auto& s = item.section;
    std::string data;
    if (s.empty()) data = m.full();
    else if (s == "HEADER") data = m.header;
    else if (s == "TEXT") data = m.body;
    else if (s.starts_with("HEADER.FIELDS")) {
      const bool exclude = s.starts_with("HEADER.FIELDS.NOT");
      const auto open = s.find('(');
      const auto close = s.rfind(')');
      if (open == std::string::npos || close == std::string::npos || close < open) return std::nullopt;
      std::vector<std::string> fields;
      tokenizer ft(std::string_view(s).substr(open + 1, close - open - 1));
      for (auto f = ft.next(); f.is_string(); f = ft.next()) fields.push_back(f.text);
      data = filter_header(m.header, fields, exclude);
    } else if (m.entity) {
      data = section_of(*m.entity, s);
    } else {
      auto part = body_part(m, s.starts_with("1") ? 1 : 2, s.ends_with(".MIME"));
      if (!part) return std::nullopt;
      data = std::move(*part);
    }
    if (item.partial) {
      const auto [o, n] = *item.partial;
      data = o >= data.size() ? std::string() : data.substr(o, n);
    }
    return data;
  }

  void fetch(const std::string& tag, bool uid, tokenizer& t) {
    const token set = t.next();
    const token items = t.next();
    if (set.what != token::kind::atom || !(items.what == token::kind::atom || items.what == token::kind::list))
      return tagged(tag, "BAD FETCH expects a set and items");
    fetch_job job;
    job.tag = tag;
    job.command = uid ? "UID FETCH" : "FETCH";
    std::vector<std::string> raw;
    if (items.what == token::kind::atom) {
      const auto up = to_upper(items.text);
      if (up == "ALL") raw = {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"};
      else if (up == "FAST") raw = {"FLAGS", "INTERNALDATE", "RFC822.SIZE"};
      else if (up == "FULL") raw = {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"};
      else raw = {items.text};
    } else {
      tokenizer it(items.text);
      for (auto i = it.next(); i.what != token::kind::end; i = it.next()) {
        if (i.what != token::kind::atom) return tagged(tag, "BAD Invalid FETCH item");
        raw.push_back(i.text);
      }
    }
    std::optional<std::uint64_t> changed_since;
    const token mods = t.next();
    if (mods.what == token::kind::list) {
      tokenizer mt(mods.text);
      const token m = mt.next();
      const token v = mt.next();
      if (m.what != token::kind::atom || !iequals(m.text, "CHANGEDSINCE") || v.what != token::kind::atom)
        return tagged(tag, "BAD Unknown FETCH modifier");
      changed_since = std::strtoull(v.text.c_str(), nullptr, 10);
      condstore_ = true;
    } else if (mods.what != token::kind::end) {
      return tagged(tag, "BAD Unexpected FETCH argument");
    }
    bool has_uid = false, has_flags = false, has_modseq = false, sets_seen = false;
    for (const auto& r : raw) {
      auto item = parse_fetch_item(r);
      if (!item) return tagged(tag, fmt::format("BAD Unknown FETCH item {}", r));
      has_uid = has_uid || item->what == fetch_item::kind::uid;
      has_flags = has_flags || item->what == fetch_item::kind::flags;
      has_modseq = has_modseq || item->what == fetch_item::kind::modseq;
      sets_seen = sets_seen || (item->what == fetch_item::kind::section && !item->peek);
      job.items.push_back(std::move(*item));
    }
    if (uid && !has_uid) job.items.insert(job.items.begin(), fetch_item{fetch_item::kind::uid, "UID", {}, false, {}});
    if (changed_since && !has_modseq) job.items.push_back(fetch_item{fetch_item::kind::modseq, "MODSEQ", {}, false, {}});
    job.add_flags = sets_seen && !read_only_ && !has_flags;
    job.view = srv_.visible(user_, folder_);
    auto seqs = resolve(set.text, uid, job.view);
    if (!seqs) return tagged(tag, "BAD Invalid sequence set");
    if (!uid && !seqs->empty() && seqs->back() > job.view.size()) return tagged(tag, "BAD Invalid sequence number");
    if (changed_since) {
      std::erase_if(*seqs, [&](std::uint32_t s) {
        return srv_.modseq_of(user_, folder_, job.view[s - 1]) <= *changed_since;
      });
    }
    job.seqs = std::move(*seqs);
    if (sets_seen && !read_only_) {
      for (auto s : job.seqs) {
        const auto u = job.view[s - 1];
        const auto fl = srv_.flags_of(user_, folder_, u);
        if ((fl & f_seen) == 0) srv_.set_flags(user_, folder_, u, fl | f_seen);
      }
    }
    job_ = std::move(job);
    produce_fetch_chunk();
  }

  void produce_fetch_chunk() {
    auto& job = *job_;
    const bool disconnect = srv_.disconnect_mid_fetch(user_);
    while (out_.size() < chunk_bytes && job.next < job.seqs.size()) {
      const auto seq = job.seqs[job.next++];
      const auto uid = job.view[seq - 1];
      std::optional<generated_message> msg;
      auto content = [&]() -> const generated_message& {
        if (!msg) msg = srv_.content(user_, srv_.source_of(user_, folder_, uid));
        return *msg;
      };
      out_ += fmt::format("* {} FETCH (", seq);
      bool first = true;
      auto sep = [&] {
        if (!first) out_ += ' ';
        first = false;
      };
      using k = fetch_item::kind;
      for (const auto& item : job.items) {
        sep();
        switch (item.what) {
          case k::uid: out_ += fmt::format("UID {}", uid); break;
          case k::flags: out_ += "FLAGS " + flags_text(srv_.flags_of(user_, folder_, uid)); break;
          case k::internaldate: out_ += fmt::format("INTERNALDATE \"{}\"", internal_date(content().date)); break;
          case k::size: out_ += fmt::format("RFC822.SIZE {}", content().header.size() + content().body.size()); break;
          case k::bodystructure: out_ += "BODYSTRUCTURE " + content().bodystructure; break;
          case k::body: out_ += "BODY " + content().body_basic; break;
          case k::modseq: out_ += fmt::format("MODSEQ ({})", srv_.modseq_of(user_, folder_, uid)); break;
          case k::envelope: out_ += "ENVELOPE " + envelope_of(content().header); break;
          case k::section: {
            auto data = section_data(item, content());
            if (!data) data = std::string();
            out_ += fmt::format("{} {{{}}}\r\n", item.label, data->size());
            if (disconnect) {
              // The fault: the connection drops halfway through the literal.
              out_.append(*data, 0, data->size() / 2);
              close_after_write_ = true;
              job_.reset();
              return;
            }
            out_ += *data;
            break;
          }
        }
      }
      if (job.add_flags) {
        sep();
        out_ += "FLAGS " + flags_text(srv_.flags_of(user_, folder_, uid));
      }
      out_ += ")\r\n";
    }
    if (job.next >= job.seqs.size()) {
      tagged(job.tag, fmt::format("OK {} completed", job.command));
      job_.reset();
    }
  }

  // ---------------------------------------------------------------- SEARCH
  void search(const std::string& tag, bool uid, tokenizer& t) {
    const auto view = srv_.visible(user_, folder_);
    std::vector<bool> keep(view.size(), true);
    bool condstore = false;
    auto apply = [&](auto pred) {
      for (std::size_t i = 0; i < view.size(); ++i) keep[i] = keep[i] && pred(i, view[i]);
    };
    for (token tok = t.next(); tok.what != token::kind::end; tok = t.next()) {
      if (tok.what == token::kind::list) {
        // a parenthesised group of keys: only plain ALL-like groups of the keys below
        tokenizer inner(tok.text);
        if (!inner.at_end()) return tagged(tag, "BAD Parenthesised search keys are not supported");
        continue;
      }
      if (tok.what != token::kind::atom) return tagged(tag, "BAD Invalid search key");
      const auto key = to_upper(tok.text);
      if (key == "ALL") continue;
      if (key == "CHARSET") {
        t.next();
        continue;
      }
      if (key == "UID" || (!key.empty() && (std::isdigit(static_cast<unsigned char>(key[0])) || key[0] == '*'))) {
        const bool by_uid = key == "UID";
        const token s = by_uid ? t.next() : tok;
        if (s.what != token::kind::atom) return tagged(tag, "BAD Invalid set");
        const auto seqs = resolve(s.text, by_uid, view);
        if (!seqs) return tagged(tag, "BAD Invalid set");
        std::vector<bool> in(view.size(), false);
        for (auto q : *seqs) in[q - 1] = true;
        apply([&](std::size_t i, std::uint32_t) { return bool(in[i]); });
        continue;
      }
      std::optional<std::uint8_t> want_set, want_clear;
      if (key == "SEEN") want_set = f_seen;
      else if (key == "UNSEEN") want_clear = f_seen;
      else if (key == "DELETED") want_set = f_deleted;
      else if (key == "UNDELETED") want_clear = f_deleted;
      else if (key == "FLAGGED") want_set = f_flagged;
      else if (key == "UNFLAGGED") want_clear = f_flagged;
      else if (key == "ANSWERED") want_set = f_answered;
      else if (key == "UNANSWERED") want_clear = f_answered;
      if (want_set || want_clear) {
        apply([&](std::size_t, std::uint32_t u) {
          const auto f = srv_.flags_of(user_, folder_, u);
          return want_set ? (f & *want_set) != 0 : (f & *want_clear) == 0;
        });
        continue;
      }
      if (key == "SINCE" || key == "BEFORE" || key == "ON" || key == "SENTSINCE" || key == "SENTBEFORE" ||
          key == "SENTON") {
        const token d = t.next();
        const auto day = d.is_string() ? parse_imap_date(d.text) : -1;
        if (day < 0) return tagged(tag, "BAD Invalid date");
        const bool since = key.ends_with("SINCE"), before = key.ends_with("BEFORE");
        apply([&](std::size_t, std::uint32_t u) {
          const auto date = srv_.gen.date_of(srv_.source_of(user_, folder_, u));
          if (since) return date >= day;
          if (before) return date < day;
          return date >= day && date < day + 86400;
        });
        continue;
      }
      if (key == "LARGER" || key == "SMALLER") {
        const token v = t.next();
        if (v.what != token::kind::atom || v.text.empty() ||
            v.text.find_first_not_of("0123456789") != std::string::npos)
          return tagged(tag, "BAD Invalid size");
        const auto limit = std::strtoull(v.text.c_str(), nullptr, 10);
        const bool larger = key == "LARGER";
        // Sizes need the content: generated only for messages the earlier keys kept.
        apply([&](std::size_t, std::uint32_t u) {
          const auto m = srv_.content(user_, srv_.source_of(user_, folder_, u));
          const auto size = m.header.size() + m.body.size();
          return larger ? size > limit : size < limit;
        });
        continue;
      }
      if (key == "MODSEQ") {
        const token v = t.next();
        if (v.what != token::kind::atom) return tagged(tag, "BAD Invalid MODSEQ");
        const auto ms = std::strtoull(v.text.c_str(), nullptr, 10);
        condstore = true;
        apply([&](std::size_t, std::uint32_t u) { return srv_.modseq_of(user_, folder_, u) >= ms; });
        continue;
      }
      return tagged(tag, fmt::format("BAD Unsupported search key {}", key));
    }
    std::string line = "* SEARCH";
    std::uint64_t top = 0;
    for (std::size_t i = 0; i < view.size(); ++i) {
      if (!keep[i]) continue;
      line += fmt::format(" {}", uid ? view[i] : i + 1);
      top = std::max(top, srv_.modseq_of(user_, folder_, view[i]));
    }
    if (condstore && top > 0) line += fmt::format(" (MODSEQ {})", top);
    out_ += line + "\r\n";
    tagged(tag, fmt::format("OK {}SEARCH completed", uid ? "UID " : ""));
  }

  // ---------------------------------------------------------------- STORE, COPY, MOVE, EXPUNGE
  void store(const std::string& tag, bool uid, tokenizer& t) {
    if (read_only_) return tagged(tag, "NO Mailbox is read-only");
    const token set = t.next();
    token op = t.next();
    if (op.what == token::kind::list) op = t.next();  // (UNCHANGEDSINCE n): every change is accepted
    if (set.what != token::kind::atom || op.what != token::kind::atom)
      return tagged(tag, "BAD STORE expects a set, an operation and flags");
    std::string flag_text;
    const token fl = t.next();
    if (fl.what == token::kind::list) flag_text = fl.text;
    else if (fl.what == token::kind::atom) flag_text = fl.text + " " + std::string(t.rest());
    else return tagged(tag, "BAD STORE expects flags");
    const auto flags = parse_flags(flag_text);
    if (!flags) return tagged(tag, "BAD Invalid flags");
    auto opu = to_upper(op.text);
    const bool silent = opu.ends_with(".SILENT");
    if (silent) opu.resize(opu.size() - 7);
    if (opu != "+FLAGS" && opu != "-FLAGS" && opu != "FLAGS") return tagged(tag, "BAD Invalid STORE operation");
    const auto view = srv_.visible(user_, folder_);
    const auto seqs = resolve(set.text, uid, view);
    if (!seqs) return tagged(tag, "BAD Invalid set");
    for (auto s : *seqs) {
      const auto u = view[s - 1];
      const auto old = srv_.flags_of(user_, folder_, u);
      const std::uint8_t now = opu == "FLAGS" ? *flags : opu == "+FLAGS" ? old | *flags : old & ~*flags;
      if (now != old) srv_.set_flags(user_, folder_, u, now);
      if (!silent)
        out_ += fmt::format("* {} FETCH ({}FLAGS {}{})\r\n", s, uid ? fmt::format("UID {} ", u) : "",
                            flags_text(now),
                            condstore_ ? fmt::format(" MODSEQ ({})", srv_.modseq_of(user_, folder_, u)) : "");
    }
    tagged(tag, fmt::format("OK {}STORE completed", uid ? "UID " : ""));
  }

  void copy(const std::string& tag, bool move, bool uid, tokenizer& t) {
    const token set = t.next();
    const token dest = t.next();
    if (set.what != token::kind::atom || !dest.is_string())
      return tagged(tag, "BAD COPY/MOVE expects a set and a mailbox");
    const auto to = srv_.resolve_folder(user_, dest.text);
    if (!to) return tagged(tag, "NO [TRYCREATE] Mailbox doesn't exist");
    if (move && read_only_) return tagged(tag, "NO Mailbox is read-only");
    const auto view = srv_.visible(user_, folder_);
    const auto seqs = resolve(set.text, uid, view);
    if (!seqs) return tagged(tag, "BAD Invalid set");
    std::vector<std::uint32_t> src, dst;
    for (auto s : *seqs) {
      const auto u = view[s - 1];
      const auto source = srv_.source_of(user_, folder_, u);
      const auto fl = srv_.flags_of(user_, folder_, u);
      auto& d = srv_.touch(user_, *to);
      const auto nu = d.uidnext++;
      d.appended[nu] = source;
      d.flags[nu] = {fl, ++d.highest_modseq};
      src.push_back(u);
      dst.push_back(nu);
    }
    const std::string code = src.empty() ? std::string()
                                         : fmt::format("[COPYUID {} {} {}] ", srv_.uidvalidity(user_, *to, false),
                                                       compact_set(src), compact_set(dst));
    const auto verb = uid ? (move ? "UID MOVE" : "UID COPY") : (move ? "MOVE" : "COPY");
    if (!move) return tagged(tag, fmt::format("OK {}{} completed", code, verb));
    out_ += fmt::format("* OK {}Moved\r\n", code);
    // Expunge in descending sequence order so the numbers stay valid while the client applies them.
    for (auto it = seqs->rbegin(); it != seqs->rend(); ++it) {
      srv_.remove(user_, folder_, view[*it - 1]);
      out_ += fmt::format("* {} EXPUNGE\r\n", *it);
    }
    tagged(tag, fmt::format("OK {} completed", verb));
  }

  // Removes \Deleted messages (restricted to a UID set if given).
  void expunge_matching(const seq_set* uids, bool report) {
    const auto view = srv_.visible(user_, folder_);
    for (std::size_t i = view.size(); i-- > 0;) {
      const auto u = view[i];
      if ((srv_.flags_of(user_, folder_, u) & f_deleted) == 0) continue;
      if (uids && !in_set(*uids, u)) continue;
      srv_.remove(user_, folder_, u);
      if (report) out_ += fmt::format("* {} EXPUNGE\r\n", i + 1);
    }
  }

  server& srv_;
  tcp::socket sock_;
  asio::steady_timer timer_;
  command_framer framer_;
  std::array<char, 4 * 1024> rbuf_{};
  std::string in_, out_, writing_;
  bool closed_ = false;
  bool close_after_write_ = false;
  state state_ = state::not_authenticated;
  waiting waiting_ = waiting::command;
  std::string pending_tag_;
  std::size_t user_ = 0;
  bool slow_ = false;
  folder_id folder_ = inbox;
  bool read_only_ = false;
  bool condstore_ = false;  // MODSEQ in unsolicited FETCH only once the client asked for it
  std::optional<fetch_job> job_;
};

void server::start_accept() {
  acceptor.async_accept([this](boost::system::error_code ec, tcp::socket sock) {
    if (stopping || !acceptor.is_open()) return;
    if (ec) {
      // Out of descriptors and similar: back off briefly instead of spinning.
      accept_retry.expires_after(std::chrono::milliseconds(50));
      accept_retry.async_wait([this](boost::system::error_code e) {
        if (!e && !stopping) start_accept();
      });
      return;
    }
    on_accept(std::move(sock));
    start_accept();
  });
}

void server::on_accept(tcp::socket sock) {
  if (current.load() >= opt.max_connections) {
    // Like a real server at its limit: accept, say why, close.
    refused++;
    auto s = std::make_shared<tcp::socket>(std::move(sock));
    static constexpr std::string_view bye = "* BYE Too many connections\r\n";
    asio::async_write(*s, asio::buffer(bye.data(), bye.size()),
                      [this, s](boost::system::error_code, std::size_t n) {
                        bytes_sent += n;
                        boost::system::error_code ignore;
                        s->shutdown(tcp::socket::shutdown_both, ignore);
                        s->close(ignore);
                      });
    return;
  }
  const auto now = ++current;
  accepted++;
  for (auto p = peak.load(); now > p && !peak.compare_exchange_weak(p, now);) {
  }
  boost::system::error_code ignore;
  sock.set_option(tcp::no_delay(true), ignore);
  auto c = std::make_shared<connection>(*this, std::move(sock));
  live.emplace(c.get(), c);
  c->start();
}

struct simulator::impl : server {
  using server::server;
};

simulator::simulator(sim_options o) : impl_(std::make_unique<impl>(std::move(o))) {}

simulator::~simulator() { stop(); }

std::uint16_t simulator::start() {
  auto& s = *impl_;
  if (s.started) {
    s.set_error("already started");
    return 0;
  }
  if (!s.load_emls()) return 0;
  boost::system::error_code ec;
  const std::string host = s.opt.host == "localhost" ? "127.0.0.1" : s.opt.host;
  const auto addr = asio::ip::make_address(host, ec);
  if (ec) {
    s.set_error(fmt::format("invalid listen address '{}'", s.opt.host));
    return 0;
  }
  if (!addr.is_loopback()) {
    s.set_error(fmt::format("refusing to listen on non-loopback address {}", s.opt.host));
    return 0;
  }
  const tcp::endpoint ep(addr, s.opt.port);
  s.acceptor.open(ep.protocol(), ec);
  if (!ec) s.acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) s.acceptor.bind(ep, ec);
  if (!ec) s.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    s.set_error(fmt::format("cannot listen on {}:{}: {}", host, s.opt.port, ec.message()));
    boost::system::error_code ignore;
    s.acceptor.close(ignore);
    return 0;
  }
  const auto port = s.acceptor.local_endpoint(ec).port();
  s.start_accept();
  s.started = true;
  s.started_at = std::chrono::steady_clock::now();
  s.thread = std::thread([&s] {
    try {
      s.ioc.run();
    } catch (const std::exception& e) {
      s.set_error(fmt::format("simulator thread stopped: {}", e.what()));
    }
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    s.final_cpu_ns = std::int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
    s.finished = true;
  });
  pthread_getcpuclockid(s.thread.native_handle(), &s.cpu_clock);
  return port;
}

void simulator::stop() {
  auto& s = *impl_;
  if (!s.thread.joinable()) return;
  asio::post(s.ioc, [&s] {
    s.stopping = true;
    boost::system::error_code ignore;
    s.acceptor.close(ignore);
    s.accept_retry.cancel();
    std::vector<std::shared_ptr<connection>> all;
    for (auto& [p, w] : s.live)
      if (auto c = w.lock()) all.push_back(std::move(c));
    for (auto& c : all) c->close();
  });
  // With the listener and every socket closed no handler re-arms, so run() returns.
  s.thread.join();
}

sim_stats simulator::stats() const {
  const auto& s = *impl_;
  sim_stats st;
  st.peak_connections = s.peak.load();
  st.logins = s.logins.load();
  st.refused = s.refused.load();
  st.connections = s.current.load();
  st.accepted = s.accepted.load();
  st.failed_logins = s.failed_logins.load();
  st.throttled_logins = s.throttled_logins.load();
  st.bytes_sent = s.bytes_sent.load();
  timespec ts{};
  const bool running = s.started && !s.finished.load() && clock_gettime(s.cpu_clock, &ts) == 0;
  // Once the thread has gone its clock is invalid: it left its total in final_cpu_ns.
  const std::int64_t ns =
      running ? std::int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec : s.final_cpu_ns.load();
  st.cpu_seconds = static_cast<double>(ns) / 1e9;
  std::lock_guard lk(s.commands_mu);
  st.commands = s.commands;
  return st;
}

std::string simulator::report_json() const {
  const auto st = stats();
  nlohmann::json j;
  j["peak_connections"] = st.peak_connections;
  j["logins"] = st.logins;
  j["refused"] = st.refused;
  j["commands"] = nlohmann::json::object();
  for (const auto& [k, v] : st.commands) j["commands"][k] = v;
  j["accepted"] = st.accepted;
  j["failed_logins"] = st.failed_logins;
  j["throttled_logins"] = st.throttled_logins;
  j["bytes_sent"] = st.bytes_sent;
  j["cpu_seconds"] = st.cpu_seconds;
  // Which users carry each fault (benchmarks tell the healthy mailboxes apart by it).
  const auto& f = impl_->opt.faults;
  if (f.wrong_password > 0 || f.disconnect_mid_fetch > 0 || f.slow > 0 || f.uidvalidity_reset > 0 || f.throttle > 0) {
    auto& fu = j["fault_users"] = nlohmann::json::object();
    for (std::size_t u = 0; u < impl_->opt.mailboxes; ++u) {
      auto add = [&](const char* k, bool on) {
        if (on) fu[k].push_back(u);
      };
      add("wrong_password", impl_->wrong_password(u));
      add("disconnect", impl_->disconnect_mid_fetch(u));
      add("slow", impl_->slow(u));
      add("uidvalidity", impl_->uidvalidity_reset(u));
      add("throttle", impl_->fault(u, 5, f.throttle));
    }
  }
  j["mailboxes"] = impl_->opt.mailboxes;
  j["messages"] = impl_->opt.messages;
  j["seed"] = impl_->opt.seed;
  return j.dump();
}

std::string simulator::last_error() const {
  std::lock_guard lk(impl_->error_mu);
  return impl_->error;
}

std::string simulator::message(std::size_t user, std::uint32_t uid) const {
  return impl_->content(user, uid).full();
}

bool simulator::has_wrong_password(std::size_t u) const { return impl_->wrong_password(u); }
bool simulator::has_disconnect_mid_fetch(std::size_t u) const { return impl_->disconnect_mid_fetch(u); }
bool simulator::is_slow(std::size_t u) const { return impl_->slow(u); }
bool simulator::is_throttled(std::size_t u) const { return impl_->throttled(u); }
bool simulator::has_uidvalidity_reset(std::size_t u) const { return impl_->uidvalidity_reset(u); }

namespace {

int signal_pipe[2] = {-1, -1};

extern "C" void on_stop_signal(int) {
  const int saved = errno;
  const char c = 1;
  [[maybe_unused]] const auto n = ::write(signal_pipe[1], &c, 1);
  errno = saved;
}

}  // namespace

int run_simulate_command(const sim_options& opt) {
  // Self-pipe: the handler (async-signal-safe write) wakes the blocking read below, whichever
  // thread the signal lands on.
  if (::pipe2(signal_pipe, O_CLOEXEC) != 0) {
    fmt::print(stderr, "mailscan: simulate: cannot create signal pipe: {}\n", std::strerror(errno));
    return 1;
  }
  struct sigaction sa {}, old_int{}, old_term{};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, &old_int);
  ::sigaction(SIGTERM, &sa, &old_term);
  auto restore = [&] {
    ::sigaction(SIGINT, &old_int, nullptr);
    ::sigaction(SIGTERM, &old_term, nullptr);
    ::close(signal_pipe[0]);
    ::close(signal_pipe[1]);
    signal_pipe[0] = signal_pipe[1] = -1;
  };
  int rc = 0;
  try {
    simulator sim(opt);
    const auto port = sim.start();
    if (port == 0) {
      fmt::print(stderr, "mailscan: simulate: {}\n", sim.last_error());
      restore();
      return 1;
    }
    const bool v6 = opt.host.find(':') != std::string::npos;
    fmt::print("ready {}{}{}:{}\n", v6 ? "[" : "", opt.host, v6 ? "]" : "", port);
    std::fflush(stdout);
    char c = 0;
    while (::read(signal_pipe[0], &c, 1) < 0 && errno == EINTR) {
    }
    sim.stop();
    if (!opt.report_file.empty()) {
      std::ofstream f(opt.report_file, std::ios::trunc);
      f << sim.report_json() << "\n";
      f.close();
      if (!f) {
        fmt::print(stderr, "mailscan: simulate: cannot write report {}\n", opt.report_file);
        rc = 1;
      }
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "mailscan: simulate: {}\n", e.what());
    rc = 1;
  }
  restore();
  return rc;
}

mscan::expected<std::pair<std::string, std::uint16_t>, std::string> parse_listen_address(
    std::string_view s) {
  using result = std::pair<std::string, std::uint16_t>;
  std::string_view host, port;
  if (s.starts_with("[")) {
    const auto close = s.find(']');
    if (close == std::string_view::npos || s.substr(close + 1, 1) != ":")
      return mscan::unexpected{fmt::format("invalid listen address '{}' (expected [::1]:PORT)", s)};
    host = s.substr(1, close - 1);
    port = s.substr(close + 2);
  } else {
    const auto colon = s.rfind(':');
    if (colon == std::string_view::npos || s.find(':') != colon)
      return mscan::unexpected{fmt::format("invalid listen address '{}' (expected 127.0.0.1:PORT)", s)};
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
  }
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos ||
      std::stoul(std::string(port)) > 65535)
    return mscan::unexpected{fmt::format("invalid port in listen address '{}'", s)};
  if (host != "localhost") {
    boost::system::error_code ec;
    const auto addr = asio::ip::make_address(std::string(host), ec);
    if (ec) return mscan::unexpected{fmt::format("invalid host in listen address '{}'", s)};
    if (!addr.is_loopback())
      return mscan::unexpected{fmt::format("refusing to listen on non-loopback address {}", host)};
  }
  return result{std::string(host), static_cast<std::uint16_t>(std::stoul(std::string(port)))};
}

}  // namespace mscan::sim
