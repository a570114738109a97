#pragma once
// A small value-or-error type (C++20 has no std::expected). Errors are values in mailscan:
// every layer returns expected<T, its_error> instead of throwing across layer boundaries.
#include <utility>
#include <variant>

namespace mscan {

template <class E>
struct unexpected {
  E error;
};
template <class E>
unexpected(E) -> unexpected<E>;

template <class T, class E>
class expected {
 public:
  expected(T value) : v_(std::in_place_index<0>, std::move(value)) {}
  expected(unexpected<E> u) : v_(std::in_place_index<1>, std::move(u.error)) {}

  bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  E& error() & { return std::get<1>(v_); }
  const E& error() const& { return std::get<1>(v_); }

 private:
  std::variant<T, E> v_;
};

// expected<void, E>: success carries no value.
template <class E>
class expected<void, E> {
 public:
  expected() = default;
  expected(unexpected<E> u) : err_(std::move(u.error)), ok_(false) {}
  bool has_value() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  E& error() & { return err_; }
  const E& error() const& { return err_; }

 private:
  E err_{};
  bool ok_ = true;
};

} // namespace mscan
