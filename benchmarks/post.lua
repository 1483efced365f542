-- wrk script: the benchmarked endpoint is a POST without a body.
wrk.method = "POST"
