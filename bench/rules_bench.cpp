// rules_bench: evaluate() with 1,000 rules plus reference matching with 10,000 patterns and
// 10,000 items over the real-world corpus (parsed once up front), beside parse_message alone
// over the same messages in the same run. Rule literals are drawn from the corpus itself
// (subject and body words, sender domains) so guards and conditions hit as real rules would.
//
// usage: rules_bench [corpus_dir] [seconds_per_phase] [rules] [reference_patterns]
#include "core/matcher.hpp"
#include "core/references.hpp"
#include "core/rules.hpp"
#include "protocols/mime/message.hpp"

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <re2/re2.h>

namespace {

using clock_type = std::chrono::steady_clock;
using namespace mscan;

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) / 1e9;
}

struct result {
  double seconds = 0, cpu_seconds = 0;
  std::size_t messages = 0;
};

template <class T, class F>
result run_for(const std::vector<T>& corpus, double seconds, F&& per_message) {
  result r;
  auto t0 = clock_type::now();
  double c0 = thread_cpu_seconds();
  do {
    for (std::size_t i = 0; i < corpus.size(); ++i) {
      per_message(corpus[i], i);
      ++r.messages;
    }
    r.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
  } while (r.seconds < seconds);
  r.cpu_seconds = thread_cpu_seconds() - c0;
  return r;
}

std::vector<std::string> words_of(std::string_view s, std::size_t min_len) {
  std::vector<std::string> out;
  std::string w;
  auto flush = [&] {
    if (w.size() >= min_len && w.size() <= 20)
      out.push_back(w);
    w.clear();
  };
  for (char c : s) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
      w += c;
    else
      flush();
  }
  flush();
  return out;
}

core::condition_config leaf(std::string f, std::string op, std::string v) {
  core::condition_config c;
  c.field = std::move(f);
  c.op = std::move(op);
  c.value = std::move(v);
  return c;
}
core::condition_config group(std::string g, std::vector<core::condition_config> kids) {
  core::condition_config c;
  c.group = std::move(g);
  c.children = std::move(kids);
  return c;
}

// The obvious alternative, for comparison: every rule in order, every leaf its own RE2 run
// over its field (the same case-insensitive literal patterns), no sets, no guards. Covers the
// fields and operators this bench generates.
class naive_rules {
 public:
  explicit naive_rules(const std::vector<core::rule_config>& rules) : rules_(rules) {
    for (const auto& r : rules_)
      prepare(r.root);
  }

  std::size_t evaluate(const mime::message& m, std::string_view user, std::string_view folder) const {
    std::size_t fired = 0;
    for (const auto& r : rules_) {
      if (!r.users.empty() && std::find(r.users.begin(), r.users.end(), user) == r.users.end())
        continue;
      fired += holds(r.root, m, folder);
    }
    return fired;
  }

 private:
  void prepare(const core::condition_config& c) {
    for (const auto& k : c.children)
      prepare(k);
    if (!c.group.empty() || c.op == "before" || c.op == "after" || c.field == "has_attachment")
      return;
    std::string q = RE2::QuoteMeta(c.value), pat;
    if (c.op == "regex") pat = c.value;
    else if (c.op == "equals" || c.op == "not_equals") pat = "^(?i:" + q + ")$";
    else if (c.op == "starts_with") pat = "^(?i:" + q + ")";
    else if (c.op == "ends_with") pat = "(?i:" + q + ")$";
    else pat = "(?i:" + q + ")";
    res_.emplace(&c, std::make_unique<RE2>(pat));
  }

  bool leaf(const core::condition_config& c, const mime::message& m, std::string_view folder) const {
    if (c.op == "after") return m.date && *m.date > 978307200;   // the bench only uses 2001-01-01
    if (c.op == "before") return m.date && *m.date < 1893456000; // and 2030-01-01
    if (c.field == "has_attachment") {
      bool has = std::any_of(m.attachments.begin(), m.attachments.end(),
                             [](const mime::attachment& a) { return !a.is_inline || a.content_id.empty(); });
      return has == (c.value == "true");
    }
    const RE2& re = *res_.at(&c);
    bool neg = c.op.rfind("not_", 0) == 0, hit = false;
    auto try_text = [&](std::string_view t) { hit = hit || RE2::PartialMatch(re2::StringPiece(t.data(), t.size()), re); };
    auto trim = [](std::string_view t) {
      auto ws = [](char ch) { return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n'; };
      while (!t.empty() && ws(t.front())) t.remove_prefix(1);
      while (!t.empty() && ws(t.back())) t.remove_suffix(1);
      return t;
    };
    if (c.field == "subject") try_text(trim(m.subject));
    else if (c.field == "body") try_text(trim(m.body_text));
    else if (c.field == "folder") try_text(folder);
    else {
      const auto& list = c.field == "from" ? m.from : c.field == "to" ? m.to : c.field == "cc" ? m.cc : m.bcc;
      for (const auto& a : list) {
        try_text(a.email);
        if (!a.display_name.empty())
          try_text(a.display_name + " <" + a.email + ">");
      }
    }
    return hit != neg;
  }

  bool holds(const core::condition_config& c, const mime::message& m, std::string_view folder) const {
    if (c.group == "all") {
      for (const auto& k : c.children)
        if (!holds(k, m, folder)) return false;
      return true;
    }
    if (c.group == "any") {
      for (const auto& k : c.children)
        if (holds(k, m, folder)) return true;
      return c.children.empty();
    }
    return leaf(c, m, folder);
  }

  const std::vector<core::rule_config>& rules_;
  std::map<const core::condition_config*, std::unique_ptr<RE2>> res_;
};

} // namespace

int main(int argc, char** argv) {
  std::string dir = argc > 1 ? argv[1] : MAILSCAN_CORPUS_DIR;
  double seconds = argc > 2 ? std::atof(argv[2]) : 2.0;
  int rule_count = argc > 3 ? std::atoi(argv[3]) : 1000;
  int pattern_count = argc > 4 ? std::atoi(argv[4]) : 10000;

  std::vector<std::string> raw;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.path().extension() != ".eml")
      continue;
    std::ifstream in(e.path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    raw.push_back(ss.str());
  }
  if (ec || raw.empty()) {
    std::fprintf(stderr, "rules_bench: no .eml files in %s\n", dir.c_str());
    return 2;
  }
  std::sort(raw.begin(), raw.end());  // directory order is not stable across machines
  std::vector<mime::message> parsed;
  for (const auto& m : raw)
    parsed.push_back(mime::parse_message(m));

  // Vocabulary from the corpus, so conditions hit at realistic rates.
  std::vector<std::string> subject_words, body_words, domains;
  {
    std::set<std::string> sw, bw, dm;
    for (const auto& m : parsed) {
      for (auto& w : words_of(m.subject, 4)) sw.insert(w);
      auto bws = words_of(std::string_view(m.body_text).substr(0, 2000), 5);
      for (std::size_t i = 0; i < bws.size() && i < 40; ++i) bw.insert(bws[i]);
      for (auto* list : {&m.from, &m.to, &m.cc})
        for (auto& a : *list)
          if (auto at = a.email.find('@'); at != std::string::npos)
            dm.insert(a.email.substr(at + 1));
    }
    subject_words.assign(sw.begin(), sw.end());
    body_words.assign(bw.begin(), bw.end());
    domains.assign(dm.begin(), dm.end());
  }
  // Plus words no message contains: most rules in a big tenant never fire on a given message.
  for (int i = 0; i < 200; ++i) {
    subject_words.push_back("Projectname" + std::to_string(i));
    body_words.push_back("contractclause" + std::to_string(i));
    domains.push_back("customer" + std::to_string(i) + ".example");
  }

  std::mt19937 rng(42);
  auto pick = [&](const std::vector<std::string>& v) { return v[rng() % v.size()]; };
  std::vector<core::rule_config> rules;
  for (int i = 0; i < rule_count; ++i) {
    core::rule_config r;
    r.name = "rule " + std::to_string(i);
    r.root.group = "all";
    auto& c = r.root.children;
    switch (i % 10) {
      case 0: c = {leaf("subject", "contains", pick(subject_words))}; break;
      case 1: c = {leaf("from", "ends_with", "@" + pick(domains))}; break;
      case 2:
        c = {leaf("to", "contains", pick(domains)),
             group("any", {leaf("subject", "regex", "(?i)\\b" + pick(subject_words) + "\\b"),
                           leaf("body", "contains", pick(body_words))})};
        break;
      case 3:
        c = {leaf("subject", "regex", "(?i)(" + pick(subject_words) + "|" + pick(subject_words) + ")\\s+\\w+")};
        break;
      case 4: c = {leaf("body", "contains", pick(body_words) + " " + pick(body_words))}; break;
      case 5: c = {leaf("from", "contains", pick(domains)), leaf("subject", "not_contains", pick(subject_words))}; break;
      case 6: c = {leaf("subject", "starts_with", pick(subject_words)), leaf("date", "after", "2001-01-01")}; break;
      case 7:
        r.root.group = "any";
        c = {leaf("cc", "equals", "sales@" + pick(domains)),
             group("all", {leaf("has_attachment", "equals", "true"), leaf("subject", "contains", pick(subject_words))})};
        break;
      case 8:
        c = {leaf("body", "regex", "(?i)invoice\\s+(no|number)\\.?\\s*\\d{3,}"), leaf("folder", "equals", "INBOX")};
        break;
      default:
        if (i % 50 == 9)  // a few rules with no literal they cannot fire without
          c = {leaf("has_attachment", "equals", "true"), leaf("date", "before", "2030-01-01")};
        else
          c = {leaf("subject", "ends_with", pick(subject_words))};
        r.users = {"user" + std::to_string(i % 7)};
    }
    core::action_config a;
    a.type = "mark_read";
    r.actions.push_back(a);
    rules.push_back(std::move(r));
  }

  std::vector<core::item_config> items;
  std::vector<core::reference_pattern> patterns;
  // A few items whose references do occur in the corpus (subject tokens with a digit).
  for (const auto& m : parsed)
    for (auto tok : core::subject_tokens(m.subject))
      if (items.size() < 100 && tok.size() >= 3 &&
          std::any_of(tok.begin(), tok.end(), [](char c) { return c >= '0' && c <= '9'; }))
        items.push_back({"project", std::string(tok)});
  for (int i = 0; i < pattern_count; ++i) {
    items.push_back({"opportunity", "OPP-" + std::to_string(100000 + i)});
    // 10,000 distinct shapes, e.g. per-customer prefixes: "C123-\d{4,6}"
    patterns.push_back({"kind" + std::to_string(i % 5), "C" + std::to_string(i) + "-\\d{4,6}"});
  }

  auto c0 = clock_type::now();
  auto compiled = core::compile_rules(rules);
  auto c1 = clock_type::now();
  auto refs = core::reference_matcher::build(items, patterns);
  auto c2 = clock_type::now();
  if (!compiled || !refs) {
    std::fprintf(stderr, "rules_bench: %s\n",
                 !compiled ? compiled.error().message.c_str() : refs.error().message.c_str());
    return 1;
  }
  std::size_t body_bytes = 0, subject_bytes = 0;
  for (const auto& m : parsed) {
    body_bytes += m.body_text.size();
    subject_bytes += m.subject.size();
  }
  std::printf("mean body_text %zu bytes, mean subject %zu bytes\n", body_bytes / parsed.size(),
              subject_bytes / parsed.size());
  auto st = compiled->stats();
  std::printf("corpus: %zu messages; %zu rules (%zu unguarded, %zu distinct set patterns), %d reference patterns + %zu items\n",
              parsed.size(), st.rules, st.unguarded_rules, st.set_patterns, pattern_count, items.size());
  std::printf("compile: rules %.1f ms, references %.1f ms\n",
              std::chrono::duration<double, std::milli>(c1 - c0).count(),
              std::chrono::duration<double, std::milli>(c2 - c1).count());

  volatile std::size_t sink = 0;
  std::size_t fired = 0, references = 0;
  auto users = std::vector<std::string>{"user0", "user1", "user2", "user3", "user4", "user5", "user6"};
  for (std::size_t i = 0; i < parsed.size(); ++i) {  // warm-up (DFA caches) and hit counts
    fired += core::evaluate(*compiled, parsed[i], users[i % users.size()], "INBOX").size();
    references += refs->find(parsed[i].subject).size();
  }

  result parse = run_for(raw, seconds, [&](const std::string& m, std::size_t) {
    auto msg = mime::parse_message(m);
    sink = sink + msg.body_text.size() + msg.from.size();
  });
  result eval = run_for(parsed, seconds, [&](const mime::message& m, std::size_t i) {
    sink = sink + core::evaluate(*compiled, m, users[i % users.size()], "INBOX").size();
  });
  result ref = run_for(parsed, seconds, [&](const mime::message& m, std::size_t) {
    sink = sink + refs->find(m.subject).size();
  });
  result both = run_for(parsed, seconds, [&](const mime::message& m, std::size_t i) {
    sink = sink + core::evaluate(*compiled, m, users[i % users.size()], "INBOX").size() +
           refs->find(m.subject).size();
  });

  naive_rules naive(rules);
  std::size_t naive_fired = 0;
  std::size_t disagreements = 0;  // a cross-check of the compiled engine on real mail
  for (std::size_t i = 0; i < parsed.size(); ++i) {
    auto n = naive.evaluate(parsed[i], users[i % users.size()], "INBOX");
    naive_fired += n;
    disagreements += n != core::evaluate(*compiled, parsed[i], users[i % users.size()], "INBOX").size();
  }
  result slow = run_for(parsed, seconds, [&](const mime::message& m, std::size_t i) {
    sink = sink + naive.evaluate(m, users[i % users.size()], "INBOX");
  });

  auto cpu_rate = [](const result& r) { return double(r.messages) / r.cpu_seconds; };
  std::printf("per corpus pass: %zu rule hits (naive evaluation: %zu, messages where they differ: %zu), %zu references\n",
              fired, naive_fired, disagreements, references);
  std::printf("%-26s %12s %12s %12s\n", "", "wall msg/s", "cpu msg/s", "us/msg cpu");
  for (auto [name, r] : {std::pair{"parse_message (baseline)", parse}, std::pair{"evaluate (rules)", eval},
                         std::pair{"references.find", ref}, std::pair{"evaluate + references", both},
                         std::pair{"naive: RE2 per leaf", slow}})
    std::printf("%-26s %12.0f %12.0f %12.2f\n", name, double(r.messages) / r.seconds, cpu_rate(r),
                1e6 / cpu_rate(r));
  std::printf("ratio (evaluate + references) / parse_message throughput: %.2f\n",
              cpu_rate(both) / cpu_rate(parse));
  std::printf("evaluate vs naive per-leaf RE2: %.1fx faster\n", cpu_rate(eval) / cpu_rate(slow));
  if (disagreements)
    return 1;
  return sink == 42 ? 3 : 0;
}
