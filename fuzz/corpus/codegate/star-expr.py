e
stzke
*tstz