// N-API glue for the store's index: SQLite (the system's libsqlite3, bundled in the
// platform package), opened and queried synchronously on the calling thread, the way
// the store has always used its index. The TypeScript side (src/store/sqlite.ts) gives
// it the small better-sqlite3-like surface the store needs; everything that reaches
// SQLite from here is checked first, and every SQLite failure becomes a JavaScript
// error carrying SQLite's message and code, never a crash.
#include <napi.h>
#include <sqlite3.h>
#include <cmath>
#include <cstdint>
#include <string>
#include <unordered_set>
#include <vector>
#include "binding/args.h"

namespace {

constexpr size_t kMaxSqlBytes = size_t(1) << 20;   // far above any statement the store writes
constexpr size_t kMaxBlobBytes = size_t(1) << 30;  // a bound value of up to 1 GiB

class StmtHandle;

Napi::Error sqlite_error(Napi::Env env, sqlite3* db, int rc, const std::string& what) {
  const char* msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  Napi::Error e = Napi::Error::New(env, what + ": " + (msg ? msg : sqlite3_errstr(rc)));
  e.Set("sqliteCode", Napi::Number::New(env, rc));
  return e;
}

// ------------------------------------------------------------------ database

class DbHandle : public Napi::ObjectWrap<DbHandle> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "SqliteDatabase",
                       {InstanceMethod("exec", &DbHandle::Exec),
                        InstanceMethod("prepare", &DbHandle::Prepare),
                        InstanceMethod("inTransaction", &DbHandle::InTransaction),
                        InstanceMethod("close", &DbHandle::Close)});
  }

  // new SqliteDatabase(file, readonly, mustExist)
  DbHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DbHandle>(info) {
    THROW_IF(info.Length() < 3 || !info[0].IsString() || !info[1].IsBoolean() || !info[2].IsBoolean(),
             "SqliteDatabase(file: string, readonly: boolean, mustExist: boolean)");
    er_binding::tag_object(info.This().As<Napi::Object>(), er_binding::kSqliteDbTag);
    std::string file = info[0].As<Napi::String>().Utf8Value();
    THROW_IF(file.empty() || file.find('\0') != std::string::npos, "the index file name must be a non-empty path");
    bool readonly = info[1].As<Napi::Boolean>().Value();
    bool must_exist = info[2].As<Napi::Boolean>().Value();
    int flags = readonly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | (must_exist ? 0 : SQLITE_OPEN_CREATE));
    // one database is used from the thread that opened it: no per-call mutex
    flags |= SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(file.c_str(), &db_, flags, nullptr);
    if (rc != SQLITE_OK) {
      Napi::Error e = sqlite_error(info.Env(), db_, rc, "cannot open " + file);
      sqlite3_close_v2(db_);
      db_ = nullptr;
      throw e;
    }
    sqlite3_extended_result_codes(db_, 1);
  }

  ~DbHandle() override { close_all(); }

  sqlite3* db(Napi::Env env) const {
    if (!db_) throw Napi::Error::New(env, "the index database is closed");
    return db_;
  }
  void adopt(StmtHandle* s) { stmts_.insert(s); }
  void forget(StmtHandle* s) { stmts_.erase(s); }

 private:
  friend class StmtHandle;
  sqlite3* db_ = nullptr;
  std::unordered_set<StmtHandle*> stmts_;

  void close_all();

  static std::string sql_arg(const Napi::CallbackInfo& info) {
    THROW_IF(info.Length() < 1 || !info[0].IsString(), "expected an SQL string");
    std::string sql = info[0].As<Napi::String>().Utf8Value();
    THROW_IF(sql.size() > kMaxSqlBytes, "SQL text longer than 1 MiB");
    return sql;
  }

  Napi::Value Exec(const Napi::CallbackInfo& info) {
    er_binding::check_this(info, er_binding::kSqliteDbTag, "SqliteDatabase");
    std::string sql = sql_arg(info);
    char* err = nullptr;
    int rc = sqlite3_exec(db(info.Env()), sql.c_str(), nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
      std::string msg = err ? err : sqlite3_errstr(rc);
      sqlite3_free(err);
      Napi::Error e = Napi::Error::New(info.Env(), "SQLite: " + msg);
      e.Set("sqliteCode", Napi::Number::New(info.Env(), rc));
      throw e;
    }
    return info.Env().Undefined();
  }

  Napi::Value Prepare(const Napi::CallbackInfo& info);

  Napi::Value InTransaction(const Napi::CallbackInfo& info) {
    er_binding::check_this(info, er_binding::kSqliteDbTag, "SqliteDatabase");
    return Napi::Boolean::New(info.Env(), sqlite3_get_autocommit(db(info.Env())) == 0);
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    er_binding::check_this(info, er_binding::kSqliteDbTag, "SqliteDatabase");
    close_all();
    return info.Env().Undefined();
  }
};

// ------------------------------------------------------------------ statement

class StmtHandle : public Napi::ObjectWrap<StmtHandle> {
 public:
  static Napi::FunctionReference* ctor;
  static Napi::Function Init(Napi::Env env) {
    Napi::Function f = DefineClass(env, "SqliteStatement",
                                   {InstanceMethod("run", &StmtHandle::Run),
                                    InstanceMethod("get", &StmtHandle::Get),
                                    InstanceMethod("all", &StmtHandle::All),
                                    InstanceMethod("bind", &StmtHandle::Bind),
                                    InstanceMethod("step", &StmtHandle::Step),
                                    InstanceMethod("reset", &StmtHandle::Reset),
                                    InstanceMethod("pluck", &StmtHandle::Pluck)});
    ctor = new Napi::FunctionReference(Napi::Persistent(f));
    return f;
  }

  // Constructed only by SqliteDatabase.prepare, which leaves the prepared statement in
  // `adopting` for the constructor to take (JavaScript cannot fill it: a statement made
  // from JavaScript finds it empty and is refused).
  static sqlite3_stmt* adopting;

  StmtHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<StmtHandle>(info) {
    stmt_ = adopting;  // from here on the destructor finalizes it, whatever happens
    adopting = nullptr;
    THROW_IF(!stmt_ || info.Length() < 1 || !er_binding::has_tag(info[0], er_binding::kSqliteDbTag),
             "SqliteStatement objects come from SqliteDatabase.prepare(sql)");
    er_binding::tag_object(info.This().As<Napi::Object>(), er_binding::kSqliteStmtTag);
    owner_ = Napi::ObjectWrap<DbHandle>::Unwrap(info[0].As<Napi::Object>());
    owner_ref_ = Napi::Persistent(info[0].As<Napi::Object>());  // the database outlives its statements
    owner_->adopt(this);
  }

  ~StmtHandle() override {
    if (owner_) owner_->forget(this);
    finalize();
  }

  void finalize() {
    if (stmt_) sqlite3_finalize(stmt_);
    stmt_ = nullptr;
  }
  void detach() {
    finalize();
    owner_ = nullptr;
  }

 private:
  sqlite3_stmt* stmt_ = nullptr;
  DbHandle* owner_ = nullptr;
  Napi::ObjectReference owner_ref_;
  bool pluck_ = false;
  Napi::ObjectReference names_;
  int names_count_ = -1;

  Napi::Value Pluck(const Napi::CallbackInfo& info) {
    er_binding::check_this(info, er_binding::kSqliteStmtTag, "SqliteStatement");
    THROW_IF(info.Length() < 1 || !info[0].IsBoolean(), "pluck(on: boolean)");
    pluck_ = info[0].As<Napi::Boolean>().Value();
    if (pluck_ && stmt_ && sqlite3_column_count(stmt_) < 1) throw Napi::TypeError::New(info.Env(), "pluck() needs a statement that returns columns");
    return info.Env().Undefined();
  }

  sqlite3_stmt* stmt(Napi::Env env) const {
    if (!stmt_) throw Napi::Error::New(env, "the index database is closed");
    return stmt_;
  }
  sqlite3* db() const { return owner_ ? owner_->db_ : nullptr; }

  // Binds the call's arguments to the parameters, in order.
  void bind_all(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    sqlite3_stmt* s = stmt(env);
    sqlite3_reset(s);
    uint32_t n = (uint32_t)info.Length();
    int want = sqlite3_bind_parameter_count(s);
    if ((int64_t)n != want)
      throw Napi::RangeError::New(env, "the statement takes " + std::to_string(want) + " parameters, got " +
                                           std::to_string(n));
    for (uint32_t i = 0; i < n; i++) {
      Napi::Value x = info[i];
      int idx = (int)i + 1, rc;
      if (x.IsNull() || x.IsUndefined()) {
        rc = sqlite3_bind_null(s, idx);
      } else if (x.IsNumber()) {
        double d = x.As<Napi::Number>().DoubleValue();
        if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) <= 9007199254740992.0)
          rc = sqlite3_bind_int64(s, idx, (sqlite3_int64)d);
        else
          rc = sqlite3_bind_double(s, idx, d);
      } else if (x.IsBigInt()) {
        bool lossless = false;
        int64_t b = x.As<Napi::BigInt>().Int64Value(&lossless);
        if (!lossless) throw Napi::RangeError::New(env, "parameter " + std::to_string(idx) + ": BigInt out of 64-bit range");
        rc = sqlite3_bind_int64(s, idx, b);
      } else if (x.IsBoolean()) {
        rc = sqlite3_bind_int(s, idx, x.As<Napi::Boolean>().Value() ? 1 : 0);
      } else if (x.IsString()) {
        std::string t = x.As<Napi::String>().Utf8Value();
        if (t.size() > kMaxBlobBytes) throw Napi::RangeError::New(env, "parameter " + std::to_string(idx) + ": text over 1 GiB");
        rc = sqlite3_bind_text64(s, idx, t.data(), t.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
      } else if (x.IsTypedArray() && x.As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array) {
        Napi::Uint8Array u = x.As<Napi::Uint8Array>();
        if (u.ByteLength() > kMaxBlobBytes) throw Napi::RangeError::New(env, "parameter " + std::to_string(idx) + ": blob over 1 GiB");
        // a detached or empty view binds a zero-length blob, never a dangling pointer
        static const uint8_t empty = 0;
        const void* p = u.ByteLength() ? (const void*)u.Data() : (const void*)&empty;
        rc = sqlite3_bind_blob64(s, idx, p, u.ByteLength(), SQLITE_TRANSIENT);
      } else {
        throw Napi::TypeError::New(env, "parameter " + std::to_string(idx) +
                                            ": only numbers, bigints, booleans, strings, Uint8Arrays and null can be bound");
      }
      if (rc != SQLITE_OK) throw sqlite_error(env, db(), rc, "cannot bind parameter " + std::to_string(idx));
    }
  }

  Napi::Value column(Napi::Env env, sqlite3_stmt* s, int c) {
    switch (sqlite3_column_type(s, c)) {
      case SQLITE_INTEGER: {
        sqlite3_int64 v = sqlite3_column_int64(s, c);
        if (v > 9007199254740991LL || v < -9007199254740991LL) return Napi::BigInt::New(env, (int64_t)v);
        return Napi::Number::New(env, (double)v);
      }
      case SQLITE_FLOAT: return Napi::Number::New(env, sqlite3_column_double(s, c));
      case SQLITE_TEXT: {
        const unsigned char* t = sqlite3_column_text(s, c);
        int n = sqlite3_column_bytes(s, c);
        return Napi::String::New(env, t ? (const char*)t : "", (size_t)n);
      }
      case SQLITE_BLOB: {
        const void* b = sqlite3_column_blob(s, c);
        int n = sqlite3_column_bytes(s, c);
        return Napi::Buffer<uint8_t>::Copy(env, b ? (const uint8_t*)b : nullptr, (size_t)n);
      }
      default: return env.Null();
    }
  }

  // A row as an object keyed by column name, or its first column alone when plucking.
  Napi::Value row(Napi::Env env, sqlite3_stmt* s) {
    if (pluck_) return column(env, s, 0);
    int n = sqlite3_column_count(s);
    if (names_.IsEmpty() || names_count_ != n) {
      // the column names, made once as JavaScript strings (kept in an array: a reference
      // can only hold an object); a schema change re-prepares with the same names
      Napi::Array a = Napi::Array::New(env, (size_t)n);
      for (int c = 0; c < n; c++) {
        const char* name = sqlite3_column_name(s, c);
        a.Set((uint32_t)c, Napi::String::New(env, name ? name : std::to_string(c).c_str()));
      }
      names_ = Napi::Persistent(a.As<Napi::Object>());
      names_count_ = n;
    }
    Napi::Array names = names_.Value().As<Napi::Array>();
    Napi::Object o = Napi::Object::New(env);
    for (int c = 0; c < n; c++) o.Set(names.Get((uint32_t)c), column(env, s, c));
    return o;
  }

  // One step: a row object, or undefined when done (and the statement is reset).
  Napi::Value step_one(Napi::Env env) {
    sqlite3_stmt* s = stmt(env);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) return row(env, s);
    sqlite3_reset(s);
    if (rc == SQLITE_DONE) return env.Undefined();
    throw sqlite_error(env, db(), rc, "SQLite");
  }

  Napi::Value Run(const Napi::CallbackInfo& info) {
    er_binding::check_this(info, er_binding::kSqliteStmtTag, "SqliteStatement");
    bind_all(info);
    sqlite3_stmt* s = stmt(info.Env());
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) throw sqlite_error(info.Env(), db(), rc, "SQLite");
    Napi::Object r = Napi::Object::New(info.Env());
    r.Set("changes", Napi::Number::New(info.Env(), (double)sqlite3_changes64(db())));
    return r;
  }

  Napi::Value Get(const Napi::CallbackInfo& info) {
    er_binding::check_this(info, er_binding::kSqliteStmtTag, "SqliteStatement");
    bind_all(info);
    Napi::Value r = step_one(info.Env());
    sqlite3_reset(stmt(info.Env()));
    return r;
  }

  Napi::Value All(const Napi::CallbackInfo& info) {
    er_binding::check_this(info, er_binding::kSqliteStmtTag, "SqliteStatement");
    bind_all(info);
    Napi::Array out = Napi::Array::New(info.Env());
    uint32_t i = 0;
    for (;;) {
      Napi::Value r = step_one(info.Env());
      if (r.IsUndefined()) break;
      out.Set(i++, r);
    }
    return out;
  }

  Napi::Value Bind(const Napi::CallbackInfo& info) {
    er_binding::check_this(info, er_binding::kSqliteStmtTag, "SqliteStatement");
    bind_all(info);
    return info.Env().Undefined();
  }

  Napi::Value Step(const Napi::CallbackInfo& info) {
    er_binding::check_this(info, er_binding::kSqliteStmtTag, "SqliteStatement");
    return step_one(info.Env());
  }

  Napi::Value Reset(const Napi::CallbackInfo& info) {
    er_binding::check_this(info, er_binding::kSqliteStmtTag, "SqliteStatement");
    if (stmt_) sqlite3_reset(stmt_);
    return info.Env().Undefined();
  }
};
Napi::FunctionReference* StmtHandle::ctor = nullptr;
sqlite3_stmt* StmtHandle::adopting = nullptr;

void DbHandle::close_all() {
  for (StmtHandle* s : stmts_) s->detach();
  stmts_.clear();
  if (db_) sqlite3_close_v2(db_);
  db_ = nullptr;
}

Napi::Value DbHandle::Prepare(const Napi::CallbackInfo& info) {
  er_binding::check_this(info, er_binding::kSqliteDbTag, "SqliteDatabase");
  std::string sql = sql_arg(info);
  sqlite3_stmt* s = nullptr;
  const char* tail = nullptr;
  int rc = sqlite3_prepare_v3(db(info.Env()), sql.c_str(), (int)sql.size() + 1, SQLITE_PREPARE_PERSISTENT, &s, &tail);
  if (rc != SQLITE_OK) throw sqlite_error(info.Env(), db_, rc, "SQLite");
  if (!s) throw Napi::Error::New(info.Env(), "SQLite: the SQL text holds no statement");
  while (tail && *tail && (*tail == ' ' || *tail == '\n' || *tail == '\t' || *tail == ';')) tail++;
  if (tail && *tail) {
    sqlite3_finalize(s);
    throw Napi::TypeError::New(info.Env(), "prepare() takes one SQL statement; use exec() for several");
  }
  StmtHandle::adopting = s;
  try {
    return StmtHandle::ctor->New({info.This()});
  } catch (...) {
    // the constructor takes the statement as it starts; one that never ran leaves it here
    if (StmtHandle::adopting == s) {
      StmtHandle::adopting = nullptr;
      sqlite3_finalize(s);
    }
    throw;
  }
}

}  // namespace

void init_sqlite(Napi::Env env, Napi::Object exports) {
  // no global allocation statistics (a global mutex on every allocation); refused, and
  // harmless, when another part of the process has already initialized the library
  sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  exports.Set("SqliteDatabase", DbHandle::Init(env));
  // the statement class is not exported: statements come only from prepare()
  StmtHandle::Init(env);
  exports.Set("sqliteVersion", Napi::String::New(env, sqlite3_libversion()));
}
