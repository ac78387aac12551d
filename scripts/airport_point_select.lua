-- sysbench running workshop-cli's own point select, for `just bench`'s MariaDB floor row:
-- the airport query (four columns) prepared once and executed with airport_id = BENCH_ID,
-- one statement per event, as `workshop-cli cache-aside --no-cache` runs it. It shows how much
-- of a gap against sysbench's oltp_point_select comes from the query, and how much from the client.
--
--   sysbench scripts/airport_point_select.lua --db-driver=mysql --mysql-db=workshop --airport-id=3797 run

sysbench.cmdline.options = {
    ["airport-id"] = {"airport_id to read", 3797},
}

function thread_init()
    drv = sysbench.sql.driver()
    con = drv:connect()
    stmt = con:prepare("SELECT airport_id, iata, icao, name FROM airport WHERE airport_id = ?")
    param = stmt:bind_create(sysbench.sql.type.INT)
    stmt:bind_param(param)
    param:set(sysbench.opt.airport_id)
end

function event()
    local rs = stmt:execute()
    rs:free()
end

function thread_done()
    stmt:close()
    con:disconnect()
end
