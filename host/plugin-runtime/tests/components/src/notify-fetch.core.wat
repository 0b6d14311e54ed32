;; Sends `GET http://<config "authority">/hook` with wasi:http and waits for the answer:
;; ok on a 2xx status, denied("HTTP-request-denied") when the host refuses the
;; request, unavailable("HTTP error <code>") for any other error code (the code's case
;; number as a byte after the space, for tests), other("not a 2xx status") otherwise,
;; and invalid-input when the key is unset. Needs `config` and `http`.
(module
  (import "tessera:plugin/config@0.1.0" "get" (func $get (param i32 i32 i32)))
  (import "wasi:http/types@0.2.12" "[constructor]fields" (func $fields (result i32)))
  (import "wasi:http/types@0.2.12" "[constructor]outgoing-request"
    (func $request (param i32) (result i32)))
  (import "wasi:http/types@0.2.12" "[method]outgoing-request.set-scheme"
    (func $set_scheme (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi:http/types@0.2.12" "[method]outgoing-request.set-authority"
    (func $set_authority (param i32 i32 i32 i32) (result i32)))
  (import "wasi:http/types@0.2.12" "[method]outgoing-request.set-path-with-query"
    (func $set_path (param i32 i32 i32 i32) (result i32)))
  (import "wasi:http/types@0.2.12" "[method]future-incoming-response.subscribe"
    (func $subscribe (param i32) (result i32)))
  (import "wasi:http/types@0.2.12" "[method]future-incoming-response.get"
    (func $response (param i32 i32)))
  (import "wasi:http/types@0.2.12" "[method]incoming-response.status"
    (func $status (param i32) (result i32)))
  (import "wasi:http/outgoing-handler@0.2.12" "handle" (func $handle (param i32 i32 i32 i32)))
  (import "wasi:io/poll@0.2.12" "[method]pollable.block" (func $block (param i32)))
  ;;KIT
  (data (i32.const 16) "authority")
  (data (i32.const 32) "/hook")
  (data (i32.const 48) "HTTP-request-denied")
  (data (i32.const 80) "HTTP error ?")
  (data (i32.const 96) "not a 2xx status")
  (data (i32.const 128) "no authority configured")
  (func (export "tessera:plugin/notify@0.1.0#deliver") (param i32) (result i32)
    (local $opt i32) (local $req i32) (local $ret i32) (local $fut i32) (local $code i32)
    (local.set $opt (call $realloc (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 12)))
    (call $get (i32.const 16) (i32.const 9) (local.get $opt))
    (if (i32.eqz (i32.load8_u (local.get $opt)))
      (then (return (call $err (i32.const 0) (i32.const 128) (i32.const 23)))))
    (local.set $req (call $request (call $fields)))
    ;; some(http)
    (drop (call $set_scheme (local.get $req) (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 0)))
    (drop (call $set_authority (local.get $req) (i32.const 1)
                               (i32.load offset=4 (local.get $opt)) (i32.load offset=8 (local.get $opt))))
    (drop (call $set_path (local.get $req) (i32.const 1) (i32.const 32) (i32.const 5)))
    ;; result<future-incoming-response, error-code>: case at 0, payload at 8.
    (local.set $ret (call $realloc (i32.const 0) (i32.const 0) (i32.const 8) (i32.const 64)))
    (call $handle (local.get $req) (i32.const 0) (i32.const 0) (local.get $ret))
    (if (i32.load8_u (local.get $ret))
      (then (return (call $http_error (i32.load8_u offset=8 (local.get $ret))))))
    (local.set $fut (i32.load offset=8 (local.get $ret)))
    (call $block (call $subscribe (local.get $fut)))
    ;; option<result<result<incoming-response, error-code>>>: cases at 0, 8 and 16,
    ;; the response or the error code at 24.
    (call $response (local.get $fut) (local.get $ret))
    (if (i32.or (i32.eqz (i32.load8_u (local.get $ret))) (i32.load8_u offset=8 (local.get $ret)))
      (then (return (call $err (i32.const 4) (i32.const 80) (i32.const 10)))))
    (if (i32.load8_u offset=16 (local.get $ret))
      (then (return (call $http_error (i32.load8_u offset=24 (local.get $ret))))))
    (local.set $code (call $status (i32.load offset=24 (local.get $ret))))
    (if (result i32) (i32.and (i32.ge_u (local.get $code) (i32.const 200))
                              (i32.lt_u (local.get $code) (i32.const 300)))
      (then (call $ok))
      (else (call $err (i32.const 4) (i32.const 96) (i32.const 16)))))
  ;; HTTP-request-denied (case 15): denied. Anything else: unavailable, with the case.
  (func $http_error (param $code i32) (result i32)
    (if (result i32) (i32.eq (local.get $code) (i32.const 15))
      (then (call $err (i32.const 2) (i32.const 48) (i32.const 19)))
      (else
        (i32.store8 (i32.const 91) (local.get $code))
        (call $err (i32.const 1) (i32.const 80) (i32.const 12))))))
