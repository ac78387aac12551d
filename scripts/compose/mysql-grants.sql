-- Run once by the mysql image on first start (compose.yaml): integration tests create and drop
-- their own databases, so the workshop user needs more than the workshop database.
GRANT ALL PRIVILEGES ON *.* TO 'workshop'@'%';
FLUSH PRIVILEGES;
