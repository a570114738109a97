#include "core/references.hpp"

#include <re2/re2.h>
#include <re2/set.h>

#include <algorithm>
#include <unordered_map>

namespace mscan::core {
namespace {

constexpr std::int64_t set_max_mem = std::int64_t{256} << 20;

bool token_char(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
         c == '_';
}

unsigned char ascii_lower(unsigned char c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

// Case-insensitive (ASCII) hashing and equality, transparent so a token from the subject is
// looked up without copying it.
struct ci_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    std::size_t h = 1469598103934665603ull;
    for (unsigned char c : s)
      h = (h ^ ascii_lower(c)) * 1099511628211ull;
    return h;
  }
};
struct ci_equal {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const noexcept {
    if (a.size() != b.size())
      return false;
    for (std::size_t i = 0; i < a.size(); ++i)
      if (ascii_lower(static_cast<unsigned char>(a[i])) != ascii_lower(static_cast<unsigned char>(b[i])))
        return false;
    return true;
  }
};

RE2::Options quiet_options() {
  RE2::Options o;
  o.set_log_errors(false);
  return o;
}

// Calls f(token, offset) for every token of s (see the header for what a token is).
template <class F>
void for_each_token(std::string_view s, F&& f) {
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && !token_char(static_cast<unsigned char>(s[i])))
      ++i;
    auto b = i;
    while (i < s.size() && token_char(static_cast<unsigned char>(s[i])))
      ++i;
    auto tok = s.substr(b, i - b);
    while (!tok.empty() && (tok.back() == '-' || tok.back() == '_'))
      tok.remove_suffix(1);  // "OPP-1042-" at a sentence end
    if (!tok.empty())
      f(tok, b);
  }
}

} // namespace

struct reference_matcher::impl {
  std::vector<item_config> items;
  std::unordered_map<std::string, std::size_t, ci_hash, ci_equal> by_reference;
  std::vector<std::string> pattern_kinds;  // Set index -> kind
  std::unique_ptr<RE2::Set> set;           // null when there are no patterns
  std::vector<std::string> unmatchable;
};

expected<reference_matcher, references_error>
reference_matcher::build(const std::vector<item_config>& items,
                         const std::vector<reference_pattern>& patterns) {
  try {
    auto p = std::make_shared<impl>();
    p->items = items;
    p->by_reference.reserve(items.size());
    for (std::size_t i = 0; i < p->items.size(); ++i) {
      const auto& ref = p->items[i].reference;
      bool one_token = false;
      for_each_token(ref, [&](std::string_view tok, std::size_t) { one_token = tok.size() == ref.size(); });
      if (!one_token)
        p->unmatchable.push_back(ref);
      p->by_reference.emplace(ref, i);  // first definition wins
    }
    if (!patterns.empty()) {
      auto opts = quiet_options();
      opts.set_max_mem(set_max_mem);
      p->set = std::make_unique<RE2::Set>(opts, RE2::ANCHOR_BOTH);
      for (const auto& pat : patterns) {
        // Checked alone first, so the error names the pattern rather than the set.
        RE2 alone(pat.regex, quiet_options());
        if (!alone.ok())
          return unexpected{references_error{"reference pattern '" + pat.regex + "' (" + pat.kind +
                                             "): " + alone.error()}};
        std::string err;
        if (p->set->Add("(?:" + pat.regex + ")", &err) < 0)
          return unexpected{references_error{"reference pattern '" + pat.regex + "' (" + pat.kind +
                                             "): " + err}};
        p->pattern_kinds.push_back(pat.kind);
      }
      if (!p->set->Compile())
        return unexpected{references_error{"reference patterns: the set of " +
                                           std::to_string(patterns.size()) +
                                           " patterns does not fit the regex memory budget"}};
    }
    reference_matcher m;
    m.impl_ = std::move(p);
    return m;
  } catch (const std::exception& e) {
    return unexpected{references_error{std::string("reference patterns: ") + e.what()}};
  }
}

std::vector<reference_hit> reference_matcher::find(std::string_view subject) const {
  std::vector<reference_hit> out;
  if (!impl_)
    return out;
  const impl& m = *impl_;
  std::vector<int> which;
  auto seen = [&](std::string_view ref) {
    return std::any_of(out.begin(), out.end(),
                       [&](const reference_hit& h) { return ci_equal{}(h.reference, ref); });
  };
  for_each_token(subject, [&](std::string_view tok, std::size_t offset) {
    if (auto it = m.by_reference.find(tok); it != m.by_reference.end()) {
      const auto& item = m.items[it->second];
      if (!seen(item.reference))
        out.push_back({item.reference, item.kind, true, offset});
      return;
    }
    if (!m.set)
      return;
    which.clear();
    RE2::Set::ErrorInfo info{};
    bool hit = m.set->Match(re2::StringPiece(tok.data(), tok.size()), &which, &info);
    // Out of DFA memory would be a silent miss; the budget is sized so it does not happen
    // for realistic sets, and a miss here only loses an alert, never a known item.
    if (!hit || which.empty() || seen(tok))
      return;
    auto first = *std::min_element(which.begin(), which.end());
    out.push_back({std::string(tok), m.pattern_kinds[static_cast<std::size_t>(first)], false, offset});
  });
  return out;
}

const std::vector<std::string>& reference_matcher::unmatchable_references() const {
  static const std::vector<std::string> none;
  return impl_ ? impl_->unmatchable : none;
}

std::size_t reference_matcher::item_count() const { return impl_ ? impl_->items.size() : 0; }
std::size_t reference_matcher::pattern_count() const {
  return impl_ ? impl_->pattern_kinds.size() : 0;
}

struct ticket_matcher::impl {
  std::string pattern;
  std::unique_ptr<RE2> re;
};

expected<ticket_matcher, references_error> ticket_matcher::compile(std::string_view ticket_regex) {
  try {
    auto p = std::make_shared<impl>();
    p->pattern = std::string(ticket_regex);
    p->re = std::make_unique<RE2>(p->pattern, quiet_options());
    if (!p->re->ok())
      return unexpected{references_error{"ticket_regex '" + p->pattern + "': " + p->re->error()}};
    ticket_matcher t;
    t.impl_ = std::move(p);
    return t;
  } catch (const std::exception& e) {
    return unexpected{references_error{std::string("ticket_regex: ") + e.what()}};
  }
}

const std::string& ticket_matcher::pattern() const {
  static const std::string none;
  return impl_ ? impl_->pattern : none;
}

std::optional<std::string> ticket_matcher::find(std::string_view subject) const {
  if (!impl_)
    return std::nullopt;
  const RE2& re = *impl_->re;
  re2::StringPiece text(subject.data(), subject.size());
  re2::StringPiece sub[2];
  int nsub = re.NumberOfCapturingGroups() >= 1 ? 2 : 1;
  std::size_t pos = 0;
  while (pos <= subject.size()) {
    if (!re.Match(text, pos, subject.size(), RE2::UNANCHORED, sub, nsub))
      return std::nullopt;
    auto b = static_cast<std::size_t>(sub[0].data() - subject.data());
    auto e = b + sub[0].size();
    auto uc = [&](std::size_t i) { return static_cast<unsigned char>(subject[i]); };
    // A boundary matters only where the match itself ends in a token character: TT1 must
    // not be found inside TT12 or XTT1, but "[#12]" needs no boundary around its brackets.
    bool left_ok = b == e || b == 0 || !token_char(uc(b)) || !token_char(uc(b - 1));
    bool right_ok = b == e || e == subject.size() || !token_char(uc(e - 1)) || !token_char(uc(e));
    if (left_ok && right_ok && b != e) {
      if (nsub == 2 && sub[1].data() != nullptr)
        return std::string(sub[1].data(), sub[1].size());
      return std::string(sub[0].data(), sub[0].size());
    }
    pos = b + 1;  // try the next start; RE2 keeps each attempt linear
  }
  return std::nullopt;
}

expected<std::optional<std::string>, references_error> ticket_number(std::string_view subject,
                                                                     std::string_view ticket_regex) {
  auto t = ticket_matcher::compile(ticket_regex);
  if (!t)
    return unexpected{t.error()};
  return t->find(subject);
}

} // namespace mscan::core
